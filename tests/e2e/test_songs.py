"""/suno end to end: the real bot, provider client and fetcher against the Discord and airforce emulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.app import Concord
from bot.store.models import Job
from tests.e2e.harness import World, button_id, running_bot, until
from tests.e2e.songs_helpers import (
    CANCEL,
    deliveries,
    embed_text,
    job_rows,
    marker_of,
    song_settings,
    suno,
)
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator, HtmlOk, ServerError, SlowFirstByte, WrongShape


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("airforce")
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def song_bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    async with running_bot(discord_emu, song_settings(discord_emu, gateway, tmp_path)) as bot:
        yield bot


async def test_a_song_goes_from_generating_to_finished(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_polls_before_finished = 3
    itx = await suno(discord_emu, world, "A song about the sea", style="sea shanty")
    assert itx.response_type == 5
    await itx.wait_for(lambda i: i.original is not None and bool(i.original.get("embeds")), timeout=5)
    status = embed_text(itx.original)
    assert "A song about the sea" in status and "generating" in status and "Elapsed" in status
    assert (
        button_id(itx.original, CANCEL)
        == f"{CANCEL}{world.member.id}:" + button_id(itx.original, CANCEL).rsplit(":", 1)[1]
    )  # type: ignore[union-attr]
    # The job rows exist before the answer: one per clip.
    [create] = gateway.requests_for("suno")
    assert create.json == {
        "model": "chirp-v3-5",
        "prompt": "A song about the sea",
        "instrumental": "false",
        "custom": "false",
        "style": "sea shanty",
    }
    await until(lambda: len(deliveries(discord_emu, world)) == 2, within=15)
    await itx.wait_for(lambda i: "Song request finished" in embed_text(i.original), timeout=5)
    final = itx.original
    assert final.get("components") in (None, [])  # no Cancel once nothing generates
    assert embed_text(final).count("✅ finished") == 2
    delivered = deliveries(discord_emu, world)
    clips = list(gateway.suno_clips)
    for message in delivered:
        [embed] = message["embeds"]
        assert embed["title"].startswith("🎶 A song about the sea (")
        assert embed["image"]["url"].endswith(".png")
        assert any(f["name"] == "Video" and ".mp4" in f["value"] for f in embed["fields"])
        [attachment] = message["attachments"]
        assert discord_emu.attachment_bytes(attachment) == gateway.mp3
        assert message["_pinged"] == {"users": [], "roles": [], "everyone": False, "replied_user": False}
    rows = await job_rows(song_bot)
    assert sorted(r.external_ids[0] for r in rows) == sorted(clips)
    assert {r.status for r in rows} == {"done"}
    assert sorted(r.delivery_message_id for r in rows) == sorted(int(m["id"]) for m in delivered)
    assert sorted(marker_of(m) for m in delivered) == sorted(f"song job {r.id}" for r in rows)
    for clip in clips:
        polls = [r for r in gateway.requests_for("suno-status") if r.path.endswith(clip)]
        assert len(polls) == 4  # three "generating", then "finished"; nothing after
    assert discord_emu.rate_limited == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"prompt": "x" * 201}, "at most 200 characters"),
        ({"prompt": "x" * 1251, "custom": True, "style": "pop", "model": "chirp-v3-0"}, "at most 1,250"),
        ({"prompt": "x" * 3001, "custom": True, "style": "pop"}, None),
        ({"prompt": "lyrics", "custom": True}, "need a style"),
        ({"prompt": "ok", "style": "s" * 121}, None),
    ],
)
async def test_documented_limits_are_checked_before_any_call(
    discord_emu: DiscordEmulator,
    world: World,
    gateway: GatewayEmulator,
    song_bot: Concord,
    options: dict[str, object],
    problem: str | None,
) -> None:
    if problem is None:
        # Over Discord's own option limits: Discord refuses it before the bot sees it.
        with pytest.raises(AssertionError):
            await discord_emu.run_command(world.member, "suno create", options, channel=world.general)
        return
    itx = await suno(discord_emu, world, **options)  # type: ignore[arg-type]
    assert itx.ephemeral and problem in itx.original["content"]
    assert gateway.requests_for("suno") == []


async def test_custom_lyrics_up_to_3000_with_chirp_v3_5(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    itx = await suno(discord_emu, world, "la " * 1000, custom=True, style="ballad")
    await itx.wait_for(lambda i: i.original is not None and bool(i.original.get("embeds")), timeout=5)
    assert gateway.requests_for("suno")[0].json["custom"] == "true"


async def test_a_failed_song_an_unknown_status_and_non_json_are_explained(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 100
    # Each answer lasts a while (polls come every 0.3 s, status edits at most every 1.4 s).
    gateway.inject("suno-status", HtmlOk(), times=15)
    itx = await suno(discord_emu, world)
    await itx.wait_for(lambda i: "not JSON" in embed_text(i.original), timeout=10)
    gateway.clear_faults()
    gateway.inject("suno-status", WrongShape({"status": "mystery"}), times=15)
    await itx.wait_for(lambda i: "unknown status ('mystery')" in embed_text(i.original), timeout=10)
    gateway.clear_faults()
    gateway.inject("suno-status", WrongShape({"status": "error"}))
    await itx.wait_for(lambda i: "failed to generate" in embed_text(i.original), timeout=10)
    assert "Song request finished" in embed_text(itx.original)
    assert not itx.original.get("components")
    [row] = await job_rows(song_bot)
    assert row.status == "failed"
    assert deliveries(discord_emu, world) == []


async def test_the_deadline_stops_a_song_and_says_so(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 10_000
    settings = song_settings(discord_emu, gateway, tmp_path, song_deadline=10, song_poll_max=0.5)
    async with running_bot(discord_emu, settings) as bot:
        itx = await suno(discord_emu, world)
        await itx.wait_for(lambda i: "not ready within 1 minute" in embed_text(i.original), timeout=20)
        [row] = await job_rows(bot)
        assert row.status == "failed"
        polls = len(gateway.requests_for("suno-status"))
        await asyncio.sleep(1)
        assert len(gateway.requests_for("suno-status")) == polls  # nothing polls it any more


async def test_cancel_by_button_and_command_and_the_concurrent_limit(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_polls_before_finished = 10_000
    first = await suno(discord_emu, world, "first song")
    await first.wait_for(lambda i: button_id(i.original, CANCEL) is not None, timeout=5)
    second = await suno(discord_emu, world, "second song")
    await second.wait_for(lambda i: button_id(i.original, CANCEL) is not None, timeout=5)
    # SONG_MAX_ACTIVE is 2: a third is refused before quota or call.
    third = await suno(discord_emu, world, "third song")
    assert third.ephemeral and "limit is 2" in third.original["content"]
    assert len(gateway.requests_for("suno")) == 2

    # Only the requester may press Cancel.
    cancel = button_id(first.original, CANCEL)
    intruder = await discord_emu.press_button(world.admin, first.original, cancel)
    await intruder.wait_for_response()
    assert intruder.ephemeral and "Only" in intruder.original["content"]
    press = await discord_emu.press_button(world.member, first.original, cancel)
    await press.wait_for_response()
    await first.wait_for(lambda i: embed_text(i.original).count("cancelled") == 2, timeout=5)
    assert not first.original.get("components")

    # /suno status lists both; /suno cancel stops the second by the id it shows.
    status = await discord_emu.run_command(world.member, "suno status", channel=world.general)
    await status.wait_for_response()
    listing = embed_text(status.original)
    assert status.ephemeral and "first song" in listing and "second song" in listing
    assert "cancelled, cancelled" in listing and "generating, generating" in listing
    rows = await job_rows(song_bot)
    second_group = next(r.group_id for r in rows if r.request["prompt"] == "second song")
    assert second_group is not None and f"`{second_group[:8]}`" in listing
    stopped = await discord_emu.run_command(
        world.member, "suno cancel", {"request": second_group[:8]}, channel=world.general
    )
    await stopped.wait_for_response()
    assert "Stopped watching 2 clip(s)" in stopped.original["content"]
    await second.wait_for(lambda i: embed_text(i.original).count("cancelled") == 2, timeout=5)
    polls = len(gateway.requests_for("suno-status"))
    await asyncio.sleep(0.8)
    assert len(gateway.requests_for("suno-status")) == polls  # cancelled jobs are not polled

    # The limit counts generating requests only: now a new one is accepted.
    fourth = await suno(discord_emu, world, "fourth song")
    await fourth.wait_for(lambda i: button_id(i.original, CANCEL) is not None, timeout=5)


async def test_quota_is_given_back_when_refused_but_kept_after_an_unknown_outcome(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> None:
    settings = song_settings(discord_emu, gateway, tmp_path)
    # A short timeout so the POST's answer is late quickly.
    providers = settings.providers_file
    assert providers is not None
    providers.write_text(providers.read_text() + "timeout = 1\n")
    async with running_bot(discord_emu, settings) as bot:

        async def used() -> set[int]:
            report = await bot.quotas.report(world.member.id, guild_id=world.guild.id)
            [songs] = [f for f in report.features if f.feature.value == "songs"]
            return {w.used for w in songs.windows if w.cap is not None}

        gateway.inject("suno", ServerError(502))
        refused = await suno(discord_emu, world)
        await refused.wait_for(lambda i: bool(i.followups), timeout=10)
        assert "not answering" in refused.followups[-1]["content"]
        assert await used() == {0}

        gateway.inject("suno", SlowFirstByte(3))
        unknown = await suno(discord_emu, world)
        await unknown.wait_for(lambda i: bool(i.followups), timeout=10)
        assert "not resent" in unknown.followups[-1]["content"]
        assert await used() == {1}
        await asyncio.sleep(3)
        assert len(gateway.requests_for("suno")) == 2  # never resent
        assert await job_rows(bot) == []


async def test_progress_edits_stay_within_the_rate_limit(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_polls_before_finished = 15
    itx = await suno(discord_emu, world)
    await until(lambda: len(deliveries(discord_emu, world)) == 2, within=30)
    await itx.wait_for(lambda i: "Song request finished" in embed_text(i.original), timeout=10)
    assert discord_emu.rate_limited == []
    edits = discord_emu.requests_to("PATCH", r"/messages/")
    assert len(edits) >= 3
    # No bucket of Discord's is overdrawn: the channel's messages take 5 writes per 5 s, the interaction's
    # webhook (counted per token, apart from the channel) 5 per 2 s.
    for in_bucket, window in (
        (lambda path: path.startswith("/channels/") and "/messages" in path, 5.0),
        (lambda path: path.startswith("/webhooks/"), 2.0),
    ):
        writes = sorted(
            r.time for r in discord_emu.requests if r.method in ("POST", "PATCH") and in_bucket(r.path)
        )
        for i, start in enumerate(writes):
            assert sum(1 for t in writes[i:] if t - start < window) <= 5


async def test_audio_is_attached_when_it_fits_and_linked_when_not(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 0
    gateway.mp3 = gateway.mp3 + b"\x00" * (11 * 1024 * 1024)  # over the guild's 10 MiB upload limit
    await suno(discord_emu, world)
    await until(lambda: len(deliveries(discord_emu, world)) == 1, within=15)
    [message] = deliveries(discord_emu, world)
    assert message["attachments"] == []
    [audio] = [f for f in message["embeds"][0]["fields"] if f["name"] == "Audio"]
    assert audio["value"].startswith("[Listen](http://127.0.0.1:") and ".mp3)" in audio["value"]


async def test_an_audio_url_at_a_private_address_is_refused(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, song_bot: Concord
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 0
    gateway.suno_media_base = "http://10.1.2.3/media"
    await suno(discord_emu, world)
    await until(lambda: len(deliveries(discord_emu, world)) == 1, within=15)
    [message] = deliveries(discord_emu, world)
    assert message["attachments"] == []
    text = embed_text(message)
    assert "private network address" in text
    assert "10.1.2.3" not in str(message)  # no link to the private address at all (cover, video)


@pytest.mark.parametrize("clock_agrees", [True, False], ids=["expired", "discord-expired-it-early"])
async def test_after_the_token_expires_the_clip_replies_in_the_channel(
    discord_emu: DiscordEmulator,
    world: World,
    gateway: GatewayEmulator,
    song_bot: Concord,
    clock_agrees: bool,
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 10_000
    itx = await suno(discord_emu, world, "A slow song")
    await itx.wait_for(lambda i: "checked" in embed_text(i.original), timeout=10)
    status_id = itx.original["id"]
    # Fifteen minutes pass: Discord forgets the token (and so does the bot's own clock).
    itx.expire()
    if clock_agrees:  # else the bot learns it from Discord's 404 and falls back to the channel
        async with song_bot.db_sessions() as session, session.begin():
            expired = datetime.now(UTC) - timedelta(minutes=1)
            await session.execute(update(Job).values(interaction_expires_at=expired))
    gateway.suno_polls_before_finished = 0
    await until(lambda: len(deliveries(discord_emu, world)) == 1, within=15)
    [message] = deliveries(discord_emu, world)
    assert message["message_reference"]["message_id"] == status_id
    assert message["_pinged"]["replied_user"] is False
    assert message.get("interaction_metadata") is None  # a channel message, not a followup
    await until(
        lambda: "Song request finished" in embed_text(discord_emu.messages(world.general)[0]), within=10
    )
    assert discord_emu.requests_to("PATCH", rf"/channels/\d+/messages/{status_id}$")
    assert discord_emu.rate_limited == []
