"""Each /config setting takes effect in chat: an admin runs the real command, a member's chat shows it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Concord
from tests.e2e.harness import (
    World,
    bot_messages,
    chat,
    chat_settings,
    final_from,
    private_answer,
    run,
    running_bot,
    sent_messages,
    text_of,
)
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator, ServerError

REPLY = "Hello there, human."
# Quota windows are fixed (a minute starts on the minute): a frozen clock keeps two turns in one window.
FROZEN_NOW = 1_700_000_010.0


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("openai", reply=REPLY)
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
def lounge(world: World) -> Any:
    """A second text channel, made before the bot starts so that it arrives with the guild."""
    return world.guild.create_text_channel("lounge")


@pytest.fixture
async def bot(
    discord_emu: DiscordEmulator, world: World, lounge: Any, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    async with running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as running:
        running.quotas.counter.clock = lambda: FROZEN_NOW
        yield running


async def admin_sets(emu: DiscordEmulator, world: World, command: str, **options: Any) -> str:
    """Run a /config command as the admin; its answer, which must not be a refusal."""
    answer = text_of(await run(emu, world.admin, command, world.general, **options))
    assert "Manage Server" not in answer and "isn't" not in answer, answer
    return answer


async def mention_and_settle(emu: DiscordEmulator, world: World, channel: Any, text: str) -> None:
    """Mention the bot in `channel`, then wait for the member's DM to be answered. DMs are never governed
    by a server, and an ignored mention is done long before a streamed answer is, so after this any
    answer to the mention would already be visible."""
    me = emu.bot_user.id
    await emu.send_message(world.member, channel, f"<@{me}> {text}")
    dm = emu.dm_channel(world.member)
    await emu.send_message(world.member, dm, "settle")
    await emu.wait_for_message(dm, final_from(emu))


def prompts_seen(gateway: GatewayEmulator) -> list[str]:
    """The newest user message of every chat request the gateway received."""
    return [str(r.json["messages"][-1]["content"]).split("\n", 1)[-1] for r in gateway.requests_for("chat")]


async def test_the_default_chat_model_is_used_when_chat_names_none(
    discord_emu: DiscordEmulator, world: World, lounge: Any, gateway: GatewayEmulator, bot: Concord
) -> None:
    # Each turn in its own channel: back-to-back replies in one channel would queue on its write budget.
    await chat(discord_emu, world.member, world.general, "before")
    # Every request names a model: with no server default, the provider's default_model.
    [provider] = bot.providers.providers
    assert gateway.requests_for("chat")[-1].json.get("model") == bot.providers.default_model(provider.name)
    assert provider.default_model == "llama-3-8b-chat"
    [chosen, other, *_] = [m.id for m in await bot.providers.list_models("chat")]

    assert chosen in await admin_sets(discord_emu, world, "config model", kind="chat", name=chosen)
    await chat(discord_emu, world.member, lounge, "after")
    assert gateway.requests_for("chat")[-1].json["model"] == chosen
    # A model named in /chat still wins over the server's default.
    await chat(discord_emu, world.member, world.thread, "explicit", model=other)
    assert gateway.requests_for("chat")[-1].json["model"] == other


async def test_a_channel_prompt_set_in_the_modal_reaches_the_model(
    discord_emu: DiscordEmulator, world: World, lounge: Any, gateway: GatewayEmulator, bot: Concord
) -> None:
    opened = await discord_emu.run_command(
        world.admin, "config prompt", options={"channel": world.general}, channel=world.general
    )
    await opened.wait_for_response(timeout=5)
    field_id = opened.modal["components"][0]["components"][0]["custom_id"]
    submitted = await discord_emu.submit_modal(
        world.admin, opened, opened.modal["custom_id"], {field_id: "You are a pirate. Arr."}
    )
    await submitted.wait_for_response(timeout=5)

    await chat(discord_emu, world.member, world.general, "hello")
    assert sent_messages(gateway)[0]["content"].startswith("You are a pirate. Arr.")
    await chat(discord_emu, world.member, world.thread, "hello from the thread")  # inherits its parent's
    assert sent_messages(gateway)[0]["content"].startswith("You are a pirate. Arr.")
    await chat(discord_emu, world.member, lounge, "hello elsewhere")
    assert "pirate" not in sent_messages(gateway)[0]["content"]


async def test_chat_switched_off_refuses_slash_and_ignores_mentions(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    assert "chat is now off" in await admin_sets(
        discord_emu, world, "config capability", name="chat", enabled=False
    )
    refused = await run(discord_emu, world.member, "chat", world.general, prompt="anyone there?")
    assert refused.ephemeral and refused.response_type == 4  # refused before deferring
    assert refused.original["content"] == "Chat is switched off in this server."

    await mention_and_settle(discord_emu, world, world.general, "are you there?")
    assert prompts_seen(gateway) == ["settle"]  # only the DM reached the provider
    assert bot_messages(discord_emu, world.general) == []


async def test_a_channel_switched_off_has_no_chat_even_with_chat_everywhere(
    discord_emu: DiscordEmulator, world: World, lounge: Any, gateway: GatewayEmulator, bot: Concord
) -> None:
    assert "Chat is off in" in await admin_sets(
        discord_emu, world, "config chat-channel", channel=world.general, enabled=False
    )
    refused = await run(discord_emu, world.member, "chat", world.general, prompt="anyone there?")
    assert refused.ephemeral and refused.original["content"] == "Chat is switched off in this channel."
    await mention_and_settle(discord_emu, world, world.general, "hello?")
    assert bot_messages(discord_emu, world.general) == []
    assert prompts_seen(gateway) == ["settle"]
    await chat(discord_emu, world.member, lounge, "elsewhere")  # other channels are untouched


async def test_chat_everywhere_off_answers_mentions_only_in_chosen_channels(
    discord_emu: DiscordEmulator, world: World, lounge: Any, gateway: GatewayEmulator, bot: Concord
) -> None:
    show = await admin_sets(discord_emu, world, "config show")
    assert "Answers mentions and replies in every channel." in show  # a fresh server
    await admin_sets(discord_emu, world, "config chat-everywhere", enabled=False)
    await admin_sets(discord_emu, world, "config chat-channel", channel=lounge, enabled=True)
    show = await admin_sets(discord_emu, world, "config show")
    assert f"only in <#{lounge.id}> (and their threads)" in show and "/chat works in every channel" in show

    await mention_and_settle(discord_emu, world, world.general, "in general")
    assert bot_messages(discord_emu, world.general) == []
    me = discord_emu.bot_user.id
    await discord_emu.send_message(world.member, lounge, f"<@{me}> in the lounge")
    answer = await discord_emu.wait_for_message(lounge, final_from(discord_emu))
    assert answer["content"] == REPLY
    assert prompts_seen(gateway) == ["settle", "in the lounge"]
    # /chat is an explicit request: it still works in a channel not chosen for mentions.
    itx = await chat(discord_emu, world.member, world.general, "slash in general")
    assert itx.original["content"] == REPLY


async def test_max_input_is_enforced_with_the_limit_stated(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    await admin_sets(discord_emu, world, "config max-input", characters=50)
    refused = await discord_emu.run_command(world.member, "chat", {"prompt": "x" * 60}, channel=world.general)
    assert "the limit here is 50 characters" in (await private_answer(refused))["content"]
    assert gateway.requests_for("chat") == []
    await chat(discord_emu, world.member, world.general, "y" * 50)
    assert prompts_seen(gateway) == ["y" * 50]


async def test_a_custom_plan_for_everyone_denies_the_second_turn_in_a_minute(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    await admin_sets(
        discord_emu, world, "config plan", role=world.guild.everyone, plan="custom", limits="llm.minute=1"
    )
    await chat(discord_emu, world.member, world.general, "first")
    denied = await discord_emu.run_command(world.member, "chat", {"prompt": "second"}, channel=world.general)
    # Only the denied user sees it: the public "thinking…" is taken back, nothing public stays.
    assert "allowance for this minute (1/1)" in (await private_answer(denied))["content"]
    assert denied.original is None
    assert prompts_seen(gateway) == ["first"]  # no provider call for the denied turn


async def test_a_failed_provider_call_refunds_the_quota(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    async def llm_minute() -> str:
        """The LLM chat minute window as /usage shows it: remaining/cap."""
        usage = text_of(await run(discord_emu, world.member, "usage", world.general))
        found = re.search(r"^LLM chat: minute +\S+ (\d+/\d+)", usage, re.MULTILINE)
        assert found is not None, usage
        return found.group(1)

    gateway.inject("chat", ServerError(), times=3)
    failed = await run(discord_emu, world.member, "chat", world.general, prompt="hi")
    assert "not answering" in text_of(failed)
    assert await llm_minute() == "10/10"
    gateway.clear_faults()
    await chat(discord_emu, world.member, world.general, "hi again")
    assert await llm_minute() == "9/10"


async def test_config_show_tells_the_reading_mode_and_the_missing_message_content_intent(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    show = await admin_sets(discord_emu, world, "config show")
    assert "TTS reading mode" in show and "off (`/tts reading set`)" in show
    assert "without the Message Content intent" in show  # the bot runs without it by default
    text_of(await run(discord_emu, world.admin, "tts reading set", world.general, channel=world.general))
    show = await admin_sets(discord_emu, world, "config show")
    assert f"reads <#{world.general.id}> while in voice" in show
