"""Boots the real Concord bot against the loopback Discord emulator, for tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord

from bot.app import EXTENSIONS, Concord, point_discord_at
from bot.config import Settings
from bot.resources import open_resources
from bot.store.migrate import upgrade
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator


@dataclass
class World:
    """A small Discord world: one guild with an admin, a member, channels and roles."""

    guild: Any
    admin: Any
    member: Any
    general: Any
    thread: Any
    voice: Any
    mods: Any


def build_world(emu: DiscordEmulator) -> World:
    admin = emu.create_user("ada")
    member = emu.create_user("bob")
    guild = emu.create_guild("Concord Test", owner=admin)
    manage_guild = 1 << 5
    mods = guild.create_role("Mods", permissions=manage_guild)
    general = guild.create_text_channel("general")
    thread = guild.create_thread(general, "a thread")
    voice = guild.create_voice_channel("Voice")
    guild.add_member(admin, roles=[mods])
    guild.add_member(member)
    return World(
        guild=guild, admin=admin, member=member, general=general, thread=thread, voice=voice, mods=mods
    )


def emulator_settings(emu: DiscordEmulator, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": emu.token,
        "database_url": database_url,
        "discord_api_base": emu.api_base,
        "discord_gateway_url": emu.gateway_url,
        "guild_ready_timeout": 0.1,
        "log_level": "INFO",
        # The emulators serve attachments and provider media on loopback, which the fetcher refuses
        # unless it is allowlisted (the setting is empty outside tests).
        "fetch_allowlist": ["127.0.0.1"],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_bot(
    emu: DiscordEmulator,
    settings: Settings,
    *,
    extensions: tuple[str, ...] = EXTENSIONS,
    sync: bool = True,
) -> AsyncIterator[Concord]:
    """Start Concord exactly as `python -m bot run` does, wait until it is ready, sync, then stop it."""
    previous_base = discord.http.Route.BASE
    previous_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    point_discord_at(settings)
    try:
        async with open_resources(settings) as resources:
            await upgrade(resources.db_engine)
            bot = Concord.from_resources(resources, extensions=extensions)
            token = settings.discord_token.reveal() if settings.discord_token else ""
            runner = asyncio.create_task(bot.start(token))
            try:
                await emu.wait_until_ready(timeout=10)
                await asyncio.wait_for(bot.wait_until_ready(), timeout=10)
                if sync:
                    await bot.tree.sync()
                yield bot
            finally:
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(runner, timeout=5)
    finally:
        discord.http.Route.BASE = previous_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = previous_gateway


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'concord.db'}"


def write_providers_file(
    folder: Path, gateways: Sequence[GatewayEmulator], *, name: str | None = None, **options: float
) -> Path:
    """A providers.toml listing the gateway emulators in priority order (no keys needed). `name` names a
    single provider (else `<profile>-<n>`); `options` (timeouts, retries) apply to every provider."""
    assert name is None or len(gateways) == 1
    path = folder / "providers.toml"
    settings = "".join(f"{key} = {value}\n" for key, value in options.items())
    # An openai provider must name a default model; an open one, so turns count as LLM, not closed-source.
    tables = [
        f'[[provider]]\nname = "{name or f"{gateway.profile}-{index}"}"\nprofile = "{gateway.profile}"\n'
        f'base_url = "{gateway.base_url}"\n{settings}'
        + ('default_model = "llama-3-8b-chat"\n' if gateway.profile == "openai" else "")
        for index, gateway in enumerate(gateways, start=1)
    ]
    path.write_text("\n".join(tables))
    return path


# --- chat and command helpers shared by the end-to-end tests ----------------------------------------

Json = dict[str, Any]


def providers_toml(gateway: GatewayEmulator, folder: Path) -> Path:
    """A providers.toml with one OpenAI-profile gateway that fails fast (no retries, short timeouts)."""
    return write_providers_file(
        folder, [gateway], name="emu", first_byte_timeout=5, idle_timeout=5, retries=0
    )


def chat_settings(emu: DiscordEmulator, gateway: GatewayEmulator, folder: Path, **overrides: Any) -> Any:
    """Bot settings for a chat test: the emulated Discord, a database file in `folder`, `gateway`."""
    return emulator_settings(
        emu, sqlite_url(folder), providers_file=providers_toml(gateway, folder), **overrides
    )


def custom_ids(message: Json) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


STOP_BUTTON = "concord:chat:stop:"
REGENERATE_BUTTON = "concord:chat:regen:"


def button_id(message: Json | None, prefix: str) -> str | None:
    """The custom_id of the message's button starting with `prefix` (the chat buttons carry state)."""
    found = [i for i in custom_ids(message) if i.startswith(prefix)] if message is not None else []
    return found[0] if found else None


def is_final(message: Json | None) -> bool:
    """The reply is done: its last message carries the Regenerate button instead of Stop."""
    return button_id(message, REGENERATE_BUTTON) is not None


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition about the emulators' state (they change as the bot writes)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def final_from(emu: DiscordEmulator, after: Json | None = None) -> Callable[[Json], bool]:
    me = emu.bot_user.id
    return lambda m: m["_author_id"] == me and is_final(m)


def bot_messages(emu: DiscordEmulator, channel: Any) -> list[Json]:
    return [m for m in emu.messages(channel) if m["_author_id"] == emu.bot_user.id]


def sent_messages(gateway: GatewayEmulator, index: int = -1) -> list[Json]:
    """The `messages` of one chat request the gateway received."""
    return list(gateway.requests_for("chat")[index].json["messages"])


async def chat(emu: DiscordEmulator, user: Any, channel: Any, prompt: str, **options: Any) -> Any:
    itx = await emu.run_command(user, "chat", {"prompt": prompt, **options}, channel=channel)
    await itx.wait_for(lambda i: is_final(i.original), timeout=8)
    return itx


async def run(emu: DiscordEmulator, who: Any, command: str, where: Any, /, **options: Any) -> Any:
    """Run a slash command and wait for its answer (the first followup when it deferred)."""
    itx = await emu.run_command(who, command, options=options, channel=where)
    await itx.wait_for_response(timeout=5)
    if itx.response_type == 5:  # deferred: the answer is the first followup
        await itx.wait_for_followup(count=1)
    return itx


EPHEMERAL = 1 << 6


def private_answer_of(itx: Any) -> Json | None:
    """What only the user sees: the original response of a privately answered interaction, or, when a
    public "thinking…" was taken back (deleted), the ephemeral followup that answered instead."""
    if itx.ephemeral:
        return itx.original if itx.original and itx.original.get("content") else None
    if itx.responded and itx.original is None:
        return next((m for m in itx.followups if int(m.get("flags") or 0) & EPHEMERAL), None)
    return None


async def private_answer(itx: Any, within: float = 5.0) -> Json:
    """Wait for the interaction's private answer (see `private_answer_of`); a public one fails the wait."""
    await itx.wait_for(lambda i: private_answer_of(i) is not None, within)
    found = private_answer_of(itx)
    assert found is not None
    return found


def text_of(itx: Any) -> str:
    """An interaction's answer as text: content, then each embed's title, description and fields."""
    message = itx.original
    assert message is not None
    parts = [message.get("content") or ""]
    for embed in message.get("embeds", []):
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)
