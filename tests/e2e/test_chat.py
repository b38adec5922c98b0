"""Chat end to end: the real bot and provider client against the Discord and AI gateway emulators."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import Concord
from bot.discordkit.live_reply import INCOMPLETE_NOTE, STOPPED_NOTE, WRITING_MARKER
from bot.discordkit.splitting import fence_after
from bot.discordkit.write_budget import Priority, channel_write_budget
from bot.store.models import GuildSettings
from tests.e2e.harness import World, emulator_settings, running_bot, sqlite_url
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator, StreamEndsEarly

Json = dict[str, Any]


@dataclass
class PacedGateway(GatewayEmulator):
    """The gateway emulator with a token rate: `chunk_delay` seconds between streamed chunks. It notes
    when the last chunk went out, so tests can measure how long the final text took to appear."""

    chunk_delay: float = 0.0
    hold: asyncio.Event | None = None
    last_chunk_at: float = 0.0

    async def _stream_fault(
        self, request: web.Request, response: web.StreamResponse, fault: Any, sent: int
    ) -> bool:
        total = len(self.stream_chunks) if self.stream_chunks is not None else None
        if sent == 1 and self.hold is not None:
            await self.hold.wait()
        if sent == total:
            self.last_chunk_at = time.monotonic()
        elif sent > 0 and self.chunk_delay:
            await asyncio.sleep(self.chunk_delay)
        return await super()._stream_fault(request, response, fault, sent)


def providers_toml(gateway: GatewayEmulator, folder: Path) -> Path:
    path = folder / "providers.toml"
    path.write_text(
        "[[provider]]\n"
        'name = "emu"\n'
        'profile = "openai"\n'
        f'base_url = "{gateway.base_url}"\n'
        "first_byte_timeout = 5\n"
        "idle_timeout = 5\n"
        "retries = 0\n"
    )
    return path


def chat_settings(emu: DiscordEmulator, gateway: GatewayEmulator, folder: Path, **overrides: Any) -> Any:
    return emulator_settings(
        emu, sqlite_url(folder), providers_file=providers_toml(gateway, folder), **overrides
    )


@pytest.fixture
async def gateway() -> AsyncIterator[PacedGateway]:
    emu = PacedGateway("openai", reply="Hello there, human.")
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def chat_bot(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, tmp_path: Path
) -> AsyncIterator[Concord]:
    async with running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        yield bot


def custom_ids(message: Json) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


def is_final(message: Json | None) -> bool:
    """The reply is done: its last message carries the Regenerate button instead of Stop."""
    return message is not None and "concord:chat:regenerate" in custom_ids(message)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition about the emulators' state (they change as the bot writes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def bot_messages(emu: DiscordEmulator, channel: Any) -> list[Json]:
    return [m for m in emu.messages(channel) if m["_author_id"] == emu.bot_user.id]


def sent_messages(gateway: GatewayEmulator, index: int = -1) -> list[Json]:
    """The `messages` of one chat request the gateway received."""
    return list(gateway.requests_for("chat")[index].json["messages"])


async def chat(emu: DiscordEmulator, user: Any, channel: Any, prompt: str, **options: Any) -> Any:
    itx = await emu.run_command(user, "chat", {"prompt": prompt, **options}, channel=channel)
    await itx.wait_for(lambda i: is_final(i.original), timeout=8)
    return itx


# --- ways in ---------------------------------------------------------------------------------------


async def test_slash_chat_in_a_guild_streams_the_answer(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    itx = await chat(discord_emu, world.member, world.general, "Say hello")
    assert itx.response_type == 5  # deferred with "thinking" before the provider was called
    assert not itx.ephemeral
    assert itx.original["content"] == "Hello there, human."
    [button] = itx.original["components"][0]["components"]
    assert button["custom_id"] == "concord:chat:regenerate"
    messages = sent_messages(gateway)
    assert messages[0]["role"] == "system"
    assert messages[-1] == {"role": "user", "content": '[speaker: "bob"]\nSay hello'}
    assert discord_emu.rate_limited == []


async def test_slash_chat_in_a_dm(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    dm = discord_emu.dm_channel(world.member)
    itx = await chat(discord_emu, world.member, dm, "hi in private")
    assert itx.original["content"] == "Hello there, human."
    assert sent_messages(gateway)[-1]["content"].endswith("hi in private")


async def test_a_mention_is_answered_in_the_channel_as_a_reply(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    me = discord_emu.bot_user.id
    asked = await discord_emu.send_message(world.member, world.general, f"<@{me}> what's up?")
    answer = await discord_emu.wait_for_message(world.general, lambda m: m["_author_id"] == me and is_final(m))
    assert answer["content"] == "Hello there, human."
    assert answer["message_reference"]["message_id"] == asked["id"]
    assert answer["_pinged"]["replied_user"] is False
    assert sent_messages(gateway)[-1]["content"] == '[speaker: "bob"]\nwhat\'s up?'
    assert world.general.id in discord_emu.typing


async def test_a_reply_to_the_bot_continues_the_conversation(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    me = discord_emu.bot_user.id
    await discord_emu.send_message(world.member, world.general, f"<@{me}> my name is Bob")
    first = await discord_emu.wait_for_message(world.general, lambda m: m["_author_id"] == me and is_final(m))
    gateway.reply = "You are Bob."
    await discord_emu.send_message(world.member, world.general, "who am I?", reply_to=first)
    second = await discord_emu.wait_for_message(
        world.general, lambda m: m["_author_id"] == me and is_final(m), after=first
    )
    assert second["content"] == "You are Bob."
    contents = [m["content"] for m in sent_messages(gateway)]
    assert contents[1:] == ['[speaker: "bob"]\nmy name is Bob', "Hello there, human.", '[speaker: "bob"]\nwho am I?']


async def test_any_message_in_a_dm_is_answered(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    dm = discord_emu.dm_channel(world.member)
    await discord_emu.send_message(world.member, dm, "hello bot")
    answer = await discord_emu.wait_for_message(dm, lambda m: is_final(m) and m["_author_id"] != world.member.id)
    assert answer["content"] == "Hello there, human."


async def test_plain_channel_messages_are_ignored(
    discord_emu: DiscordEmulator, world: World, gateway: PacedGateway, chat_bot: Concord
) -> None:
    await discord_emu.send_message(world.member, world.general, "just talking among humans")
    await asyncio.sleep(0.05)
    assert gateway.requests_for("chat") == []
    assert bot_messages(discord_emu, world.general) == []
