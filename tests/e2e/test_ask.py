"""/ask end to end: the real bot and provider client against the Discord and airforce gateway emulators."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Concord
from bot.discordkit.live_reply import INCOMPLETE_NOTE, STOPPED_NOTE, WRITING_MARKER
from tests.e2e.harness import (
    World,
    button_id,
    emulator_settings,
    running_bot,
    sqlite_url,
    write_providers_file,
)
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import BadSseLine, GatewayEmulator, ServerError, StreamCut

STOP = "concord:ask:stop:"
WIKI = "https://en.wikipedia.org/wiki/ChatGPT"
OPENAI = "https://openai.com/chatgpt"


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("airforce")
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def ask_bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    providers = write_providers_file(
        tmp_path, [gateway], name="air", first_byte_timeout=5, idle_timeout=5, retries=0
    )
    settings = emulator_settings(
        discord_emu, sqlite_url(tmp_path), providers_file=providers, ask_edit_interval=0.2
    )
    async with running_bot(discord_emu, settings) as bot:
        yield bot


def finished(itx: Any) -> bool:
    message = itx.original
    return (
        message is not None
        and not message.get("components")
        and not message["content"].endswith(WRITING_MARKER)
        and bool(message["content"])
    )


async def ask(emu: DiscordEmulator, world: World, prompt: str) -> Any:
    itx = await emu.run_command(world.member, "ask", {"prompt": prompt}, channel=world.general)
    await itx.wait_for(finished, timeout=10)
    return itx


async def test_answer_streams_into_one_reply_with_numbered_sources(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.ask_chunks = [
        ("ChatGPT is ", WIKI),
        ("a chatbot ", WIKI),
        ("made by ", ""),
        ("OpenAI.", OPENAI),
        (" It launched in 2022.", WIKI),
    ]
    gateway.ask_chunk_delay = 0.35
    itx = await discord_emu.run_command(
        world.member, "ask", {"prompt": "What is ChatGPT"}, channel=world.general
    )
    await itx.wait_for(
        lambda i: i.original is not None and WRITING_MARKER in i.original["content"], timeout=5
    )
    interim = itx.original["content"]
    assert button_id(itx.original, STOP) is not None  # Stop while it writes
    await itx.wait_for(finished, timeout=10)
    content = itx.original["content"]
    assert interim != content and interim.removesuffix(WRITING_MARKER) in content
    assert content == (
        "ChatGPT is a chatbot made by OpenAI. It launched in 2022.\n\n**Sources**\n"
        f"1. <{WIKI}>\n2. <{OPENAI}>"
    )
    assert itx.response_type == 5  # deferred before the gateway was asked
    edits = discord_emu.requests_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")
    assert len(edits) >= 3  # the one reply grew by edits, no second message
    assert len(itx.followups) <= 1
    assert discord_emu.rate_limited == []
    assert gateway.requests_for("ask")[0].query == {"prompt": "What is ChatGPT"}


async def test_malformed_and_split_lines(
    discord_emu: DiscordEmulator,
    world: World,
    gateway: GatewayEmulator,
    ask_bot: Concord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway.ask_split_lines = True
    gateway.inject("ask", BadSseLine(after=1))
    with caplog.at_level(logging.WARNING):
        itx = await ask(discord_emu, world, "What is ChatGPT")
    content = itx.original["content"]
    assert content.startswith("ChatGPT is a chatbot made by OpenAI.\n\n**Sources**")
    assert INCOMPLETE_NOTE not in content
    assert "skipped 1 malformed GlobalAsk line(s)" in caplog.text


async def test_an_early_end_is_marked_incomplete(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.inject("ask", StreamCut(after=1))
    itx = await ask(discord_emu, world, "What is ChatGPT")
    content = itx.original["content"]
    assert content.startswith("ChatGPT is a chatbot")
    assert "made by OpenAI" not in content
    assert f"1. <{WIKI}>" in content
    assert content.endswith(INCOMPLETE_NOTE)


async def test_answers_never_ping(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.ask_chunks = [(f"Hey @everyone, <@&{world.mods.id}> and <@{world.admin.id}>!", WIKI)]
    itx = await ask(discord_emu, world, "ping them")
    assert "@everyone" in itx.original["content"]
    assert itx.original["_pinged"] == {"users": [], "roles": [], "everyone": False, "replied_user": False}


async def test_unsafe_source_urls_are_not_listed(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.ask_chunks = [("One. ", "javascript:alert(1)"), ("Two.", "https://x.example/a> @everyone <b")]
    itx = await ask(discord_emu, world, "q")
    assert itx.original["content"] == "One. Two."


async def test_stop_ends_the_answer_and_only_the_asker_may_press(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.ask_chunks = [(f"w{i} ", WIKI) for i in range(60)]
    gateway.ask_chunk_delay = 0.1
    itx = await discord_emu.run_command(world.member, "ask", {"prompt": "go on"}, channel=world.general)
    await itx.wait_for(lambda i: button_id(i.original, STOP) is not None, timeout=5)
    stop = button_id(itx.original, STOP)
    intruder = await discord_emu.press_button(world.admin, itx.original, stop)
    await intruder.wait_for_response()
    assert intruder.ephemeral and "Only" in intruder.original["content"]
    press = await discord_emu.press_button(world.member, itx.original, stop)
    await press.wait_for_response()
    await itx.wait_for(finished, timeout=5)
    content = itx.original["content"]
    assert content.endswith(STOPPED_NOTE)
    assert content.count("w") < 60
    assert f"1. <{WIKI}>" in content


async def test_a_refused_call_gives_the_quota_back(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.inject("ask", ServerError(502))
    itx = await discord_emu.run_command(world.member, "ask", {"prompt": "q"}, channel=world.general)
    await itx.wait_for(lambda i: bool(i.followups), timeout=10)
    assert "not answering" in itx.followups[-1]["content"]

    async def used() -> set[int]:
        report = await ask_bot.quotas.report(world.member.id, guild_id=world.guild.id)
        [ask_feature] = [f for f in report.features if f.feature.value == "ask"]
        return {w.used for w in ask_feature.windows if w.cap is not None}

    assert await used() == {0}
    await ask(discord_emu, world, "q")  # an answered call is counted
    assert await used() == {1}


async def test_a_long_answer_continues_in_a_second_message_with_the_sources_last(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, ask_bot: Concord
) -> None:
    gateway.ask_chunks = [(f"Sentence number {i} of a long answer. ", WIKI) for i in range(100)]
    itx = await discord_emu.run_command(world.member, "ask", {"prompt": "long"}, channel=world.general)
    await itx.wait_for(
        lambda i: bool(i.followups) and "**Sources**" in i.followups[-1]["content"], timeout=15
    )
    first, last = itx.original, itx.followups[-1]
    assert first["id"] != last["id"]
    assert all(len(m["content"]) <= 2000 for m in (first, last))
    assert "**Sources**" not in first["content"]
    assert last["content"].endswith(f"**Sources**\n1. <{WIKI}>")
    text = first["content"] + last["content"]
    assert "Sentence number 0 " in text and "Sentence number 99 " in text
