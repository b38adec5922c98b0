"""Concord's command line: run | migrate | doctor | commands | sync."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence

import aiohttp
import discord
from dotenv import load_dotenv

from bot.app import Concord, point_discord_at
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logging_setup import setup_logging
from bot.resources import open_resources
from bot.store.migrate import upgrade, upgrade_if_behind

log = logging.getLogger("bot")

NO_TOKEN = (
    "DISCORD_TOKEN is not set: add DISCORD_TOKEN=<your bot token> to .env "
    "(copy .env.example; the token is under Bot → Reset Token in the Discord developer portal)."
)
BAD_TOKEN = (
    "Discord rejected DISCORD_TOKEN: reset the token in the Discord developer portal (Bot → Reset Token) "
    "and put the new one in .env."
)
INTENT_MISSING = (
    "MESSAGE_CONTENT_INTENT=true but the intent is not enabled for this bot: enable Message Content Intent "
    "in the developer portal (Bot page) or set MESSAGE_CONTENT_INTENT=false in .env."
)


class UsageError(Exception):
    """A problem the operator fixes; printed as one sentence, exit code 2."""


def require_token(settings: Settings) -> str:
    token = settings.discord_token.reveal().strip() if settings.discord_token else ""
    if not token:
        raise UsageError(NO_TOKEN)
    return token


async def run(settings: Settings) -> None:
    token = require_token(settings)
    point_discord_at(settings)
    async with open_resources(settings) as resources:
        await upgrade_if_behind(resources.db_engine)
        bot = Concord.from_resources(resources)
        stopping = handle_signals(bot, settings.shutdown_grace)
        try:
            async with bot:
                await bot.start(token)
            if stopping:  # the signal's shutdown closed the bot; let it finish (it stores interrupted turns)
                await stopping[0]
        except discord.LoginFailure:
            raise UsageError(BAD_TOKEN) from None
        except discord.PrivilegedIntentsRequired:
            raise UsageError(INTENT_MISSING) from None
        except (aiohttp.ClientConnectionError, discord.GatewayNotFound) as exc:
            raise UsageError(f"Could not reach Discord ({type(exc).__name__}); check the network.") from None


def handle_signals(bot: Concord, grace: float) -> list[asyncio.Task[None]]:
    """SIGTERM and SIGINT start one graceful shutdown. `loop.add_signal_handler` works as PID 1 in a
    container, where Python would otherwise ignore SIGTERM. Returns the list the shutdown task goes in."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal(name: str) -> None:
        if stopping:
            return
        log.info("%s received: taking no new turns, giving replies in flight %.0f s", name, grace)
        stopping.append(loop.create_task(bot.shutdown(grace)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows' default loop
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    return stopping


async def migrate(settings: Settings) -> None:
    async with open_resources(settings) as resources:
        await upgrade(resources.db_engine)
    print("Database is at the latest schema.")


async def doctor(settings: Settings) -> int:
    from bot.doctor import render, run_checks  # a rare command: its imports stay out of every start

    point_discord_at(settings)
    async with open_resources(settings) as resources:
        checks = await run_checks(resources)
    print(render(checks))
    return 0 if all(check.ok for check in checks) else 1


async def describe_commands(settings: Settings) -> list[dict[str, object]]:
    """The slash-command tree as Discord would receive it, without connecting anywhere.

    Cogs load as they would at start, so side effects are switched off: no HTTP endpoint, no providers.
    """
    quiet = settings.model_copy(update={"http_port": None, "providers_file": None})
    async with open_resources(quiet) as resources:
        bot = Concord.from_resources(resources)
        try:
            await bot.load_extensions()
            tree = bot.tree
            return [command.to_dict(tree) for command in tree.get_commands()]
        finally:
            for extension in list(bot.extensions):  # runs each cog's cog_unload (the bot never started)
                await bot.unload_extension(extension)


async def sync(settings: Settings, guild_id: int | None) -> None:
    token = require_token(settings)
    point_discord_at(settings)
    async with open_resources(settings) as resources:
        bot = Concord.from_resources(resources)
        try:
            async with bot:
                await bot.login(token)
                guild = discord.Object(guild_id) if guild_id else None
                if guild is not None:
                    bot.tree.copy_global_to(guild=guild)
                synced = await bot.tree.sync(guild=guild)
        except discord.LoginFailure:
            raise UsageError(BAD_TOKEN) from None
    print(f"Synced {len(synced)} commands {'to guild ' + str(guild_id) if guild_id else 'globally'}.")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Concord, a Discord AI bot.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="connect to Discord and serve (default)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("doctor", help="check configuration, database, voice libraries and providers")
    commands_parser = sub.add_parser("commands", help="print the slash-command tree")
    commands_parser.add_argument(
        "--json", action="store_true", help="print JSON (the default and only format)"
    )
    sync_parser = sub.add_parser("sync", help="sync slash commands with Discord")
    sync_parser.add_argument("--guild", type=int, default=None, help="sync to this guild only (instant)")
    args = parser.parse_args(argv)
    args.command = args.command or "run"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Provider keys are named by providers.toml (api_key_env) and live in .env beside the settings.
    load_dotenv(".env", override=False)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    secrets = [settings.discord_token.reveal()] if settings.discord_token else []
    setup_logging(settings.log_level, secrets)
    try:
        if args.command == "run":
            asyncio.run(run(settings))
        elif args.command == "migrate":
            asyncio.run(migrate(settings))
        elif args.command == "doctor":
            return asyncio.run(doctor(settings))
        elif args.command == "commands":
            print(json.dumps(asyncio.run(describe_commands(settings)), indent=2))
        elif args.command == "sync":
            asyncio.run(sync(settings, args.guild))
    except (UsageError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
