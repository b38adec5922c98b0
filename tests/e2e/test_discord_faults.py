"""Discord's own errors are untrusted too: refusals and server errors never crash a reply or leak."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import Concord
from tests.e2e.harness import World, bot_messages, chat_settings, final_from, running_bot
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

SEND_MESSAGES = 1 << 11


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("openai", reply="Still here.")
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def chat_bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    async with running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        yield bot


async def test_a_channel_the_bot_may_not_post_in_is_skipped_quietly(
    discord_emu: DiscordEmulator,
    world: World,
    gateway: GatewayEmulator,
    chat_bot: Concord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    muted = world.guild.create_text_channel("muted")
    muted.set_permissions(world.guild.bot_member, allow=0, deny=SEND_MESSAGES)
    me = discord_emu.bot_user.id
    caplog.set_level(logging.WARNING)
    await discord_emu.send_message(world.member, muted, f"<@{me}> can you hear me?")
    # The bot keeps working elsewhere: a mention in #general is answered normally.
    asked = await discord_emu.send_message(world.member, world.general, f"<@{me}> and here?")
    answer = await discord_emu.wait_for_message(world.general, final_from(discord_emu), after=asked)
    assert answer["content"] == "Still here."
    assert bot_messages(discord_emu, muted) == []
    # It checked its own permissions first: no provider call, no quota, no refused write, no error.
    assert [request.json["messages"][-1]["content"] for request in gateway.requests_for("chat")] == [
        '[speaker: "bob"]\nand here?'
    ]
    assert [r for r in discord_emu.requests if r.status == 403] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_discord_server_error_on_send_is_retried_and_the_reply_arrives(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, chat_bot: Concord
) -> None:
    me = discord_emu.bot_user.id
    discord_emu.fail_next("POST", rf"/channels/{world.general.id}/messages$", status=502, times=1)
    asked = await discord_emu.send_message(world.member, world.general, f"<@{me}> hello")
    answer = await discord_emu.wait_for_message(
        world.general, final_from(discord_emu), after=asked, timeout=10
    )
    assert answer["content"] == "Still here."
    assert [r.status for r in discord_emu.requests if r.path == f"/channels/{world.general.id}/messages"][
        :2
    ] == [502, 200]
