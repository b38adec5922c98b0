"""Boots the real Concord bot against the loopback Discord emulator, for tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
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
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


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
            token = settings.discord_token.get_secret_value() if settings.discord_token else ""
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


def write_providers_file(folder: Path, gateways: Sequence[GatewayEmulator]) -> Path:
    """A providers.toml listing the given gateway emulators in priority order (no keys needed)."""
    path = folder / "providers.toml"
    tables = [
        f'[[provider]]\nname = "{gateway.profile}-{index}"\nprofile = "{gateway.profile}"\n'
        f'base_url = "{gateway.base_url}"\n'
        for index, gateway in enumerate(gateways, start=1)
    ]
    path.write_text("\n".join(tables))
    return path
