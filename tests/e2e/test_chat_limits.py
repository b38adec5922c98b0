"""Chat limits that count everything: a /chat file's text, the model's name, reply length and pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Concord
from bot.discordkit.live_reply import PAGE_CAP_NOTE
from bot.store.models import QuotaUsage
from tests.e2e.harness import World, bot_messages, chat, chat_settings, final_from, running_bot
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator("openai", reply="Fine.") as emu:
        yield emu


@pytest.fixture
async def chat_bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    async with running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        yield bot


async def test_the_text_of_a_chat_file_counts_toward_the_input_limit(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, chat_bot: Concord
) -> None:
    long_file = ("essay.txt", b"w" * 30_000, "text/plain")
    itx = await discord_emu.run_command(
        world.member, "chat", {"prompt": "summarise", "file": long_file}, channel=world.general
    )
    await itx.wait_for_followup(count=1)
    assert "1,000 characters" in itx.followups[0]["content"]
    assert gateway.requests_for("chat") == []
    async with chat_bot.db_sessions() as session:  # the refused turn's quota was given back
        assert await session.scalar(select(func.coalesce(func.sum(QuotaUsage.used), 0))) == 0


async def test_an_unknown_model_is_refused_with_close_matches(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, chat_bot: Concord
) -> None:
    known = chat_bot.catalog.names("chat") or [m.id for m in await chat_bot.catalog.refresh("chat")]
    assert "gpt-4o-mini" in known
    itx = await discord_emu.run_command(
        world.member, "chat", {"prompt": "hi", "model": "gpt-4o-mimi"}, channel=world.general
    )
    await itx.wait_for_response()
    assert itx.ephemeral
    content = itx.original["content"]
    assert "I don't know the model `gpt-4o-mimi`" in content and "`gpt-4o-mini`" in content
    assert content.count("`") <= 2 * 4  # the unknown name and at most three suggestions
    assert gateway.requests_for("chat") == []
    ok = await chat(discord_emu, world.member, world.general, "hi", model="gpt-4o-mini")
    assert ok.original["content"] == "Fine."
    assert gateway.requests_for("chat")[-1].json["model"] == "gpt-4o-mini"


async def test_max_tokens_follows_the_plan_and_a_runaway_reply_stops_at_the_page_cap(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> None:
    gateway.stream_chunks = ["word " * 100] * 200  # 100,000 characters
    settings = chat_settings(discord_emu, gateway, tmp_path, chat_max_pages=2, chat_max_tokens_free=321)
    async with running_bot(discord_emu, settings):
        me = discord_emu.bot_user.id
        await discord_emu.send_message(world.member, world.general, f"<@{me}> go on forever")
        await discord_emu.wait_for_message(world.general, final_from(discord_emu), timeout=20)
    assert gateway.requests_for("chat")[-1].json["max_tokens"] == 321
    pages = bot_messages(discord_emu, world.general)
    assert len(pages) == 2
    assert pages[-1]["content"].endswith(PAGE_CAP_NOTE.format(pages=2))
    assert all(len(page["content"]) <= 2000 for page in pages)


async def test_a_full_channel_says_too_many_questions_are_waiting(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> None:
    gateway.chat_script = lambda body: ("Slow but sure.", 1.0)
    settings = chat_settings(discord_emu, gateway, tmp_path, chat_queue_limit=1)
    async with running_bot(discord_emu, settings):
        me = discord_emu.bot_user.id
        first = await discord_emu.send_message(world.member, world.general, f"<@{me}> one")
        second = await discord_emu.send_message(world.admin, world.general, f"<@{me}> two")
        refusal = await discord_emu.wait_for_message(
            world.general, lambda m: m["_author_id"] == me and "too many questions" in m["content"]
        )
        assert refusal["message_reference"]["message_id"] == second["id"]
        answer = await discord_emu.wait_for_message(world.general, final_from(discord_emu))
        assert answer["message_reference"]["message_id"] == first["id"]
    assert len(gateway.requests_for("chat")) == 1


async def test_closed_source_patterns_from_provider_config_pick_the_stricter_quota(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> None:
    providers = tmp_path / "closed.toml"
    providers.write_text(
        f'[[provider]]\nname = "house"\nprofile = "openai"\nbase_url = "{gateway.base_url}"\n'
        'default_model = "house-secret-1"\nclosed_source = ["house-secret-*"]\nretries = 0\n'
    )
    settings = chat_settings(discord_emu, gateway, tmp_path).model_copy(update={"providers_file": providers})
    async with running_bot(discord_emu, settings) as bot:
        await chat(discord_emu, world.member, world.general, "hello")
        assert gateway.requests_for("chat")[-1].json["model"] == "house-secret-1"
        async with bot.db_sessions() as session:
            features = set((await session.scalars(select(QuotaUsage.feature))).all())
    assert features == {"closed_llm"}
