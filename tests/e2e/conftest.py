"""End-to-end fixtures: the Discord emulator, a small world in it, and Concord running against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import Concord
from tests.e2e.harness import World, build_world, emulator_settings, running_bot, sqlite_url
from tests.emulators.discord_emulator import DiscordEmulator


@pytest.fixture
async def discord_emu() -> AsyncIterator[DiscordEmulator]:
    emu = DiscordEmulator()
    await emu.start()
    yield emu
    await emu.close()
    # A bug inside the emulator would otherwise only show up as a 500 that discord.py retries.
    assert emu.internal_errors == []


@pytest.fixture
def world(discord_emu: DiscordEmulator) -> World:
    return build_world(discord_emu)


@pytest.fixture
async def concord(discord_emu: DiscordEmulator, world: World, tmp_path: Path) -> AsyncIterator[Concord]:
    settings = emulator_settings(discord_emu, sqlite_url(tmp_path))
    async with running_bot(discord_emu, settings) as bot:
        yield bot
