"""Voice states: the bot's gateway op 4 is answered the way Discord answers it (no voice server)."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.discord_emulator import permissions as perm

from .conftest import World
from .probe_bot import ProbeBot


class Recorder(discord.VoiceProtocol):
    """A voice protocol that stops after Discord's two gateway answers (the voice server is out of scope)."""

    def __init__(self, client: discord.Client, channel: Any) -> None:
        super().__init__(client, channel)
        self.states: list[dict[str, Any]] = []
        self.servers: list[dict[str, Any]] = []
        self.both = asyncio.Event()

    async def on_voice_state_update(self, data: Any) -> None:
        self.states.append(dict(data))
        if self.servers:
            self.both.set()

    async def on_voice_server_update(self, data: Any) -> None:
        self.servers.append(dict(data))
        if self.states:
            self.both.set()

    async def connect(self, *, timeout: float, reconnect: bool, **kwargs: Any) -> None:  # noqa: ASYNC109
        await self.channel.guild.change_voice_state(channel=self.channel, self_deaf=True)  # type: ignore[attr-defined]
        await asyncio.wait_for(self.both.wait(), timeout)

    async def disconnect(self, *, force: bool) -> None:
        await self.channel.guild.change_voice_state(channel=None)  # type: ignore[attr-defined]
        self.cleanup()


async def test_joining_moving_and_leaving_voice(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    channel = bot.get_channel(world.voice.id)
    assert isinstance(channel, discord.VoiceChannel)
    voice = await channel.connect(cls=Recorder, timeout=5)
    (state,) = voice.states
    assert state["channel_id"] == str(world.voice.id) and state["self_deaf"] is True
    assert state["session_id"] in emu.gateway.sessions  # the bot's own gateway session
    (server,) = voice.servers
    assert server["guild_id"] == str(world.guild.id) and server["token"] and server["endpoint"]
    assert world.guild.voice_channel_of(emu.bot_user) is world.voice
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.me.voice is not None and guild.me.voice.channel == channel

    other = world.guild.create_voice_channel("Other")
    await asyncio.sleep(0.05)
    await guild.change_voice_state(channel=guild.get_channel(other.id))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert world.guild.voice_channel_of(emu.bot_user) is other
    assert voice.states[-1]["channel_id"] == str(other.id)

    await voice.disconnect(force=True)
    await asyncio.sleep(0.1)
    assert world.guild.voice_channel_of(emu.bot_user) is None
    assert guild.me.voice is None


@pytest.mark.parametrize("deny", [perm.CONNECT, perm.VIEW_CHANNEL])
async def test_voice_join_without_connect_gets_no_answer(
    emu: DiscordEmulator, world: World, bot: ProbeBot, deny: int
) -> None:
    world.voice.set_permissions(world.guild.bot_member, deny=deny)
    await asyncio.sleep(0.05)
    channel = bot.get_channel(world.voice.id)
    assert isinstance(channel, discord.VoiceChannel)
    with pytest.raises(asyncio.TimeoutError):
        await channel.connect(cls=Recorder, timeout=0.5)
    assert world.guild.voice_channel_of(emu.bot_user) is None
    assert emu.gateway.voice_refused and emu.gateway.voice_refused[0]["channel_id"] == world.voice.id
