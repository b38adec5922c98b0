"""/tts end to end: the real bot, the Discord emulator's voice states, the real FFmpeg → Opus → player path
(only the voice-server edges are loopback), the gateway's /get-audio, quotas and the MP3 fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import Concord
from tests.e2e.harness import (
    World,
    emulator_settings,
    run,
    running_bot,
    sqlite_url,
    until,
    write_providers_file,
)
from tests.e2e.voice_loopback import FRAMES_PER_SECOND, LoopbackVoiceClient, mp3_seconds, speech_mp3
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.discord_emulator import permissions as perm
from tests.emulators.gateway import GatewayEmulator
from tests.emulators.gateway.faults import EmptyAudio, ServerError
from tests.emulators.gateway.media import mp3 as silent_mp3

SHORT = "Short."


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("airforce", mp3=speech_mp3(SHORT))
    await emu.start()
    yield emu
    await emu.close()


BotFactory = Callable[..., Any]


@pytest.fixture
def start_bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> BotFactory:
    """`async with start_bot(**settings) as bot:` Concord with the loopback voice client."""

    def factory(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "providers_file": write_providers_file(tmp_path, [gateway], retries=0),
            "tts_connect_timeout": 3,
            "tts_idle_timeout": 60,
            **overrides,
        }
        settings = emulator_settings(discord_emu, sqlite_url(tmp_path), **values)
        return _with_loopback(running_bot(discord_emu, settings))

    return factory


class _with_loopback:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aenter__(self) -> Concord:
        LoopbackVoiceClient.reset()
        bot: Concord = await self.inner.__aenter__()
        bot.voice.client_cls = LoopbackVoiceClient
        return bot

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)
        LoopbackVoiceClient.reset()


@pytest.fixture
async def bot(start_bot: BotFactory) -> AsyncIterator[Concord]:
    async with start_bot() as running:
        yield running


def bot_voice_channel(emu: DiscordEmulator, world: World) -> Any:
    return world.guild.voice_channel_of(emu.bot_user)


async def tts_used(bot: Concord, user: Any) -> int:
    used = await bot.quotas.counter.used(user.id, ["tts"])
    return max(used.values(), default=0)


def player_idle(bot: Concord, world: World) -> Callable[[], bool]:
    player = bot.voice.player(world.guild.id)
    return lambda: not player.busy


def answer(itx: Any) -> str:
    return (itx.followups[0] if itx.followups else itx.original or {}).get("content") or ""


def attachment_names(itx: Any) -> list[str]:
    message = itx.followups[0] if itx.followups else itx.original
    return [a["filename"] for a in (message or {}).get("attachments", [])]


async def say(emu: DiscordEmulator, who: Any, where: Any, text: str, **options: Any) -> Any:
    return await run(emu, who, "tts say", where, text=text, **options)


# --- the player path ------------------------------------------------------------------------------


async def test_say_plays_real_speech_in_the_callers_channel(
    discord_emu: DiscordEmulator, world: World, start_bot: BotFactory, gateway: GatewayEmulator
) -> None:
    audio = speech_mp3()
    gateway.mp3 = audio
    async with start_bot() as bot:
        world.guild.set_voice_state(world.member, world.voice)
        itx = await say(discord_emu, world.member, world.general, f"Hi **<@{world.admin.id}>** https://x.y/z")
        assert answer(itx).startswith(f"Speaking in <#{world.voice.id}>"), answer(itx)
        await until(player_idle(bot, world), within=15)

        # The provider was asked for what a person would say, in the default voice.
        (request,) = gateway.requests_for("audio")
        assert request.query["text"] == "Hi ada a link"
        assert request.query["voice"] == "alex"
        # Discord saw the bot join the caller's channel, self-deafened, through gateway op 4.
        assert bot_voice_channel(discord_emu, world) is world.voice
        ops = [p["d"] for p in discord_emu.gateway.received if p.get("op") == 4]
        assert int(ops[0]["channel_id"]) == world.voice.id and ops[0]["self_deaf"] is True
        # The real FFmpeg → Opus → player path sent ~50 packets per second of audio.
        (client,) = LoopbackVoiceClient.instances
        seconds = mp3_seconds(audio)
        (packets,) = client.plays
        assert abs(len(packets) - seconds * FRAMES_PER_SECOND) <= 3, (len(packets), seconds)
        assert all(0 < len(p) < 1275 for p in packets)  # Opus frames, not raw PCM (3840 bytes)
        assert client.silence_packets == 5
        assert [int(s) for s in client.speaking.states] == [1, 0]
        assert await tts_used(bot, world.member) == 1


async def test_voice_states_from_discord_drive_the_bots_view(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    second = world.guild.create_voice_channel("Second")
    guild = bot.get_guild(world.guild.id)
    assert guild is not None

    def where() -> int | None:
        member = guild.get_member(world.member.id)
        state = member.voice if member is not None else None
        return state.channel.id if state is not None and state.channel is not None else None

    world.guild.set_voice_state(world.member, world.voice)
    await until(lambda: where() == world.voice.id)
    world.guild.set_voice_state(world.member, second)
    await until(lambda: where() == second.id)
    assert [m.id for m in guild.get_channel(second.id).members] == [world.member.id]  # type: ignore[union-attr]
    world.guild.set_voice_state(world.member, None)
    await until(lambda: where() is None)


# --- fallback ---------------------------------------------------------------------------------------


async def test_caller_not_in_voice_gets_the_mp3_with_a_reason(
    discord_emu: DiscordEmulator, world: World, bot: Concord, gateway: GatewayEmulator
) -> None:
    itx = await say(discord_emu, world.member, world.general, "hello there")
    assert answer(itx) == "You're not in a voice channel, so here is the audio instead."
    assert attachment_names(itx) == ["speech.mp3"]
    upload = discord_emu.requests_to("POST", r"/webhooks/")[-1]
    assert upload.files[0].data == gateway.mp3
    assert not [p for p in discord_emu.gateway.received if p.get("op") == 4]
    assert await tts_used(bot, world.member) == 1  # the user got the audio


@pytest.mark.parametrize(("bit", "name"), [(perm.CONNECT, "Connect"), (perm.SPEAK, "Speak")])
async def test_missing_connect_or_speak_falls_back_to_the_mp3(
    discord_emu: DiscordEmulator, world: World, bot: Concord, bit: int, name: str
) -> None:
    world.voice.set_permissions(world.guild.bot_member, deny=bit)
    world.guild.set_voice_state(world.member, world.voice)
    await asyncio.sleep(0.1)
    itx = await say(discord_emu, world.member, world.general, "hello there")
    assert (
        answer(itx) == f"I lack the {name} permission in <#{world.voice.id}>, so here is the audio instead."
    )
    assert attachment_names(itx) == ["speech.mp3"]
    assert not [p for p in discord_emu.gateway.received if p.get("op") == 4]


async def test_a_broken_voice_connection_is_retried_once_then_the_mp3_is_attached(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    world.guild.set_voice_state(world.member, world.voice)
    LoopbackVoiceClient.fail_connects = 1  # the retry succeeds, and what waits behind is kept
    LoopbackVoiceClient.fail_after = 1.0  # long enough for the second request to queue up
    await say(discord_emu, world.member, world.general, "first")
    await say(discord_emu, world.member, world.general, "waiting")
    await until(player_idle(bot, world), within=10)
    assert sum(c.connects for c in LoopbackVoiceClient.instances) == 2
    assert [bool(p) for p in LoopbackVoiceClient.instances[-1].plays] == [True, True]

    await bot.voice.player(world.guild.id).leave()
    await until(lambda: bot_voice_channel(discord_emu, world) is None)
    LoopbackVoiceClient.fail_connects = 2  # the retry fails too
    LoopbackVoiceClient.fail_after = 0.0
    itx = await say(discord_emu, world.member, world.general, "second")
    await itx.wait_for(lambda i: len(i.followups) >= 2, timeout=10)
    fallback = itx.followups[1]
    assert fallback["content"] == "I couldn't connect to the voice channel, so here is the audio instead."
    assert [a["filename"] for a in fallback["attachments"]] == ["speech.mp3"]
    assert await tts_used(bot, world.member) == 3  # all were delivered


# --- provider answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["empty", "tiny", "server"])
async def test_bad_audio_or_provider_failure_is_one_sentence_and_refunded(
    discord_emu: DiscordEmulator, world: World, bot: Concord, gateway: GatewayEmulator, fault: str
) -> None:
    if fault == "empty":
        gateway.inject("audio", EmptyAudio())
    elif fault == "server":
        gateway.inject("audio", ServerError(), times=3)
    else:
        gateway.mp3 = silent_mp3(frames=1)
    world.guild.set_voice_state(world.member, world.voice)
    itx = await say(discord_emu, world.member, world.general, "hello")
    text = answer(itx)
    assert text.count(".") == 1 and text.endswith(".") and "http" not in text, text
    assert attachment_names(itx) == []
    assert await tts_used(bot, world.member) == 0
    assert bot_voice_channel(discord_emu, world) is None


async def test_text_cap_and_voice_choice(
    discord_emu: DiscordEmulator, world: World, start_bot: BotFactory, gateway: GatewayEmulator
) -> None:
    async with start_bot(tts_max_chars=10) as bot:
        itx = await say(discord_emu, world.member, world.general, "far too long for the cap")
        assert answer(itx) == "That's 24 characters; /tts say speaks at most 10."
        itx = await run(discord_emu, world.member, "tts voice", world.general, name="sophia")
        assert answer(itx) == "Your voice is now `sophia`."
        await say(discord_emu, world.member, world.general, "hi")
        await say(discord_emu, world.member, world.general, "hi", voice="alex")
        assert [r.query["voice"] for r in gateway.requests_for("audio")] == ["sophia", "alex"]
        assert await bot.tts_settings.user_voice(world.member.id) == "sophia"


# --- the queue ------------------------------------------------------------------------------------


async def queue_text(emu: DiscordEmulator, who: Any, world: World) -> str:
    itx = await run(emu, who, "tts queue", world.general)
    message = itx.original
    return "\n".join([message.get("content") or ""] + [e.get("description") or "" for e in message["embeds"]])


async def test_queue_plays_in_order_skip_and_stop(
    discord_emu: DiscordEmulator, world: World, bot: Concord, gateway: GatewayEmulator
) -> None:
    gateway.mp3 = speech_mp3("This sentence takes a little while to say out loud.")
    world.guild.set_voice_state(world.member, world.voice)
    world.guild.set_voice_state(world.admin, world.voice)
    first = await say(discord_emu, world.member, world.general, "one")
    second = await say(discord_emu, world.member, world.general, "two")
    third = await say(discord_emu, world.admin, world.general, "three")
    assert answer(first).startswith("Speaking in")
    assert answer(second).startswith("Queued (1 ahead)")
    assert answer(third).startswith("Queued (2 ahead)")
    shown = await queue_text(discord_emu, world.member, world)
    assert shown.index("Now:") < shown.index("“one”") < shown.index("1. ") < shown.index("“two”")
    assert shown.index("“two”") < shown.index("2. ") < shown.index("“three”")

    player = bot.voice.player(world.guild.id)
    await until(lambda: player.current is not None and player.current.frames > 5, within=5)
    # Someone else's request can't be skipped without Move Members; the requester's can.
    outsider = discord_emu.create_user("carol")
    world.guild.add_member(outsider)
    itx = await run(discord_emu, outsider, "tts skip", world.general)
    assert "Move Members" in answer(itx)
    itx = await run(discord_emu, world.member, "tts skip", world.general)
    assert answer(itx) == "Skipped “one”."
    await until(
        lambda: player.current is not None and player.current.text == "two" and player.current.frames > 5
    )
    shown = await queue_text(discord_emu, world.member, world)
    assert "“one”" not in shown and shown.index("“two”") < shown.index("“three”")

    # Stop needs Move Members and clears the queue; "three" never played, so it is refunded.
    itx = await run(discord_emu, world.member, "tts stop", world.general)
    assert "Move Members" in answer(itx)
    itx = await run(discord_emu, world.admin, "tts stop", world.general)
    assert answer(itx) == "Stopped; 2 request(s) dropped."
    await until(lambda: not player.busy)
    client = LoopbackVoiceClient.instances[-1]
    assert len(client.plays) == 2 and all(client.plays)
    assert [r.query["text"] for r in gateway.requests_for("audio")] == ["one", "two", "three"]
    assert await tts_used(bot, world.member) == 2
    assert await tts_used(bot, world.admin) == 0


async def test_idle_bot_leaves_after_the_idle_timeout(
    discord_emu: DiscordEmulator, world: World, start_bot: BotFactory
) -> None:
    async with start_bot(tts_idle_timeout=1) as bot:
        world.guild.set_voice_state(world.member, world.voice)
        await say(discord_emu, world.member, world.general, "hello")
        await until(lambda: bot_voice_channel(discord_emu, world) is world.voice, within=5)
        await until(player_idle(bot, world), within=10)
        await until(lambda: bot_voice_channel(discord_emu, world) is None, within=5)


async def test_bot_leaves_when_alone_and_moves_only_when_idle(
    discord_emu: DiscordEmulator, world: World, bot: Concord, gateway: GatewayEmulator
) -> None:
    second = world.guild.create_voice_channel("Second")
    world.guild.set_voice_state(world.member, world.voice)
    world.guild.set_voice_state(world.admin, second)
    gateway.mp3 = speech_mp3("This sentence takes a little while to say out loud.")
    await say(discord_emu, world.member, world.general, "one")
    await until(lambda: bot_voice_channel(discord_emu, world) is world.voice, within=5)
    # Busy in the first channel: a caller elsewhere gets the file; the bot stays.
    itx = await say(discord_emu, world.admin, world.general, "two")
    assert answer(itx) == f"I'm speaking in <#{world.voice.id}> right now, so here is the audio instead."
    await until(player_idle(bot, world), within=10)
    # Idle: it moves to the next caller's channel.
    gateway.mp3 = speech_mp3(SHORT)
    itx = await say(discord_emu, world.admin, world.general, "three")
    assert answer(itx).startswith(f"Speaking in <#{second.id}>")
    await until(lambda: bot_voice_channel(discord_emu, world) is second, within=5)
    await until(player_idle(bot, world), within=10)
    # Alone there: it leaves.
    world.guild.set_voice_state(world.admin, None)
    await until(lambda: bot_voice_channel(discord_emu, world) is None, within=5)


# --- reading mode ---------------------------------------------------------------------------------


async def test_reading_mode_speaks_the_channel_and_announces_speaker_changes(
    discord_emu: DiscordEmulator, world: World, start_bot: BotFactory, gateway: GatewayEmulator
) -> None:
    async with start_bot(message_content_intent=True) as bot:
        itx = await run(discord_emu, world.admin, "tts reading set", world.general, channel=world.general)
        assert answer(itx).startswith(f"Reading <#{world.general.id}> aloud")
        assert "Message Content" not in answer(itx)
        world.guild.set_voice_state(world.member, world.voice)
        world.guild.set_voice_state(world.admin, world.voice)
        # Not in voice yet: nothing is read.
        await discord_emu.send_message(world.member, world.general, "before the bot joined")
        await say(discord_emu, world.member, world.general, "hello")
        await until(player_idle(bot, world), within=10)

        outsider = discord_emu.create_user("carol")
        world.guild.add_member(outsider)
        robot = discord_emu.create_user("robot", bot=True)
        world.guild.add_member(robot)
        await discord_emu.send_message(world.member, world.general, "first **thing**")
        await discord_emu.send_message(world.member, world.general, "second thing")
        await discord_emu.send_message(outsider, world.general, "not in voice")
        await discord_emu.send_message(robot, world.general, "beep")
        await discord_emu.send_message(world.admin, world.general, f"reply to <@{world.member.id}>")
        await discord_emu.send_message(world.member, world.general, "third")
        await until(lambda: len(gateway.requests_for("audio")) == 5, within=10)
        await until(player_idle(bot, world), within=20)
        spoken = [r.query["text"] for r in gateway.requests_for("audio")]
        assert spoken == [
            "hello",
            "bob says: first thing",
            "second thing",
            "ada says: reply to bob",
            "bob says: third",
        ]
        assert await tts_used(bot, world.member) == 4  # /tts say and three messages
        assert await tts_used(bot, world.admin) == 1
        assert await tts_used(bot, outsider) == 0


async def test_reading_mode_says_when_message_content_is_missing(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    itx = await run(discord_emu, world.member, "tts reading set", world.general, channel=world.general)
    assert "Manage Server" in answer(itx)
    itx = await run(discord_emu, world.admin, "tts reading set", world.general, channel=world.general)
    assert "without the Message Content intent" in answer(itx)
    itx = await run(discord_emu, world.member, "tts reading show", world.general)
    assert "without the Message Content intent" in answer(itx)


async def test_reading_mode_in_a_voice_channels_own_text_chat(
    discord_emu: DiscordEmulator, world: World, start_bot: BotFactory, gateway: GatewayEmulator
) -> None:
    async with start_bot(message_content_intent=True) as bot:
        await run(
            discord_emu,
            world.admin,
            "tts reading set",
            world.general,
            channel=world.voice,
            announce_speaker=False,
        )
        world.guild.set_voice_state(world.member, world.voice)
        await say(discord_emu, world.member, world.general, "hello")
        await until(player_idle(bot, world), within=10)
        await discord_emu.send_message(world.member, world.general, "typed in general")
        await discord_emu.send_message(world.member, world.voice, "typed in the voice chat")
        await until(lambda: len(gateway.requests_for("audio")) == 2, within=10)
        await until(player_idle(bot, world), within=10)
        assert [r.query["text"] for r in gateway.requests_for("audio")] == [
            "hello",
            "typed in the voice chat",
        ]
