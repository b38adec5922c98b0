"""Fixtures: a started emulator, a small world in it, and the probe bot logged in with its tree synced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from tests.emulators.discord_emulator import Channel, DiscordEmulator, Guild, Role, User

from .probe_bot import ProbeBot


@dataclass
class World:
    guild: Guild
    alice: User
    bob: User
    mods: Role
    general: Channel
    voice: Channel
    thread: Channel


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(bot_name="Probe")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()
    assert not emulator.internal_errors, emulator.internal_errors


@pytest.fixture
def world(emu: DiscordEmulator) -> World:
    alice = emu.create_user("alice", global_name="Alice")
    bob = emu.create_user("bob")
    guild = emu.create_guild("Test Guild", owner=alice)
    mods = guild.create_role("Mods", permissions=1 << 5)  # MANAGE_GUILD
    general = guild.create_text_channel("general")
    voice = guild.create_voice_channel("Voice")
    thread = guild.create_thread(general, "a thread")
    guild.add_member(bob, roles=[mods], nick="bobby")
    return World(guild, alice, bob, mods, general, voice, thread)


@pytest.fixture
async def bot(emu: DiscordEmulator, world: World, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ProbeBot]:
    monkeypatch.setattr(discord.http.Route, "BASE", emu.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(emu.gateway_url))
    client = ProbeBot()
    runner = asyncio.create_task(client.start(emu.token))
    try:
        await emu.wait_until_ready(timeout=5)
        await asyncio.wait_for(client.wait_until_ready(), 5)
        await client.tree.sync()
        yield client
    finally:
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
