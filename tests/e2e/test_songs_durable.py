"""Songs survive `kill -9`: a bot process is killed mid-job, a second instance on the same database
finishes every job and delivers each clip exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.models import Job
from tests.e2e.harness import World, running_bot, until
from tests.e2e.songs_helpers import deliveries, embed_text, marker_of, song_settings, suno
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

ROOT = Path(__file__).resolve().parents[2]
LEASE = 2


@dataclass
class HeldAudioGateway(GatewayEmulator):
    """The airforce emulator, able to hold MP3 downloads until the test lets them go."""

    hold_audio: asyncio.Event | None = None
    audio_requested: asyncio.Event = field(default_factory=asyncio.Event)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["name"].endswith(".mp3"):
            self.audio_requested.set()
            if self.hold_audio is not None:
                await self.hold_audio.wait()
        return await super()._media(request)


@pytest.fixture
async def gateway() -> AsyncIterator[HeldAudioGateway]:
    emu = HeldAudioGateway("airforce")
    await emu.start()
    yield emu
    await emu.close()


def bot_environment(emu: DiscordEmulator, world: World, settings: Any, folder: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DISCORD_", "DATABASE_", "PROVIDERS_", "SONG_", "FETCH_", "DEV_GUILD"))
    }
    environment.update(
        PYTHONPATH=str(ROOT),
        DISCORD_TOKEN=emu.token,
        DISCORD_API_BASE=emu.api_base,
        DISCORD_GATEWAY_URL=emu.gateway_url,
        DATABASE_URL=settings.database_url,
        PROVIDERS_FILE=str(settings.providers_file),
        FETCH_ALLOWLIST="127.0.0.1",
        GUILD_READY_TIMEOUT="0.1",
        DEV_GUILD_ID=str(world.guild.id),
        SONG_POLL_FIRST="0.1",
        SONG_POLL_MAX="0.3",
        SONG_LEASE=str(LEASE),
        LOG_LEVEL="INFO",
    )
    return environment


async def start_bot_process(emu: DiscordEmulator, world: World, settings: Any, folder: Path) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=folder,
        env=bot_environment(emu, world, settings, folder),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await emu.wait_until_ready(timeout=30)
    await until(lambda: any(c["name"] == "suno" for c in emu.guild_commands(world.guild)), within=30)
    return process


async def kill(process: Any) -> str:
    process.send_signal(signal.SIGKILL)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == -signal.SIGKILL
    return str(stderr.decode())


async def rows(database_url: str) -> list[Job]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(select(Job.__table__))
            return [Job(**dict(row._mapping)) for row in result]
    finally:
        await engine.dispose()


async def test_a_second_instance_finishes_the_jobs_of_a_killed_one(
    discord_emu: DiscordEmulator, world: World, gateway: HeldAudioGateway, tmp_path: Path
) -> None:
    gateway.suno_polls_before_finished = 8
    settings = song_settings(discord_emu, gateway, tmp_path, song_lease=LEASE)
    process = await start_bot_process(discord_emu, world, settings, tmp_path)
    try:
        itx = await suno(discord_emu, world, "A song that outlives its bot")
        await itx.wait_for(lambda i: "checked" in embed_text(i.original), timeout=10)
        await until(lambda: all(c.polls >= 2 for c in gateway.suno_clips.values()), within=10)
    finally:
        stderr = await kill(process)
    assert "Traceback" not in stderr
    before = await rows(settings.database_url)
    assert len(before) == 2 and {r.status for r in before} == {"pending"}
    assert deliveries(discord_emu, world) == []

    async with running_bot(discord_emu, settings, sync=False):
        await until(lambda: len(deliveries(discord_emu, world)) == 2, within=30)
        await itx.wait_for(lambda i: "Song request finished" in embed_text(i.original), timeout=10)
        await asyncio.sleep(1)
    delivered = deliveries(discord_emu, world)
    assert len(delivered) == 2
    after = await rows(settings.database_url)
    assert {r.status for r in after} == {"done"}
    assert sorted(marker_of(m) for m in delivered) == sorted(f"song job {r.id}" for r in after)
    for clip in gateway.suno_clips.values():
        assert clip.polls == 9  # polled to the end once, never by two instances at a time


async def test_a_kill_between_sending_and_recording_delivers_once(
    discord_emu: DiscordEmulator, world: World, gateway: HeldAudioGateway, tmp_path: Path
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 1
    gateway.hold_audio = asyncio.Event()
    settings = song_settings(discord_emu, gateway, tmp_path, song_lease=LEASE)
    database = settings.database_url.removeprefix("sqlite+aiosqlite:///")
    process = await start_bot_process(discord_emu, world, settings, tmp_path)
    blocker = None
    try:
        await suno(discord_emu, world, "Sent but not recorded")
        # The clip is finished and the intent recorded; the bot is downloading the audio.
        await asyncio.wait_for(gateway.audio_requested.wait(), timeout=15)
        [row] = await rows(settings.database_url)
        assert row.status == "delivering"
        # Hold the database's write lock, then let the download finish: the bot posts the clip but
        # cannot record it. Kill it right after Discord has the message.
        blocker = sqlite3.connect(database, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        gateway.hold_audio.set()
        await until(lambda: len(deliveries(discord_emu, world)) == 1, within=15)
    finally:
        await kill(process)
        if blocker is not None:
            blocker.execute("ROLLBACK")
            blocker.close()
    [row] = await rows(settings.database_url)
    assert row.status == "delivering" and row.delivery_message_id is None  # sent, not recorded

    async with running_bot(discord_emu, settings, sync=False):
        for _ in range(100):
            [row] = await rows(settings.database_url)
            if row.status == "done":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
    [message] = deliveries(discord_emu, world)  # exactly one message for the clip
    [row] = await rows(settings.database_url)
    assert row.status == "done" and row.delivery_message_id == int(message["id"])
    assert marker_of(message) == f"song job {row.id}"


async def test_a_kill_after_the_intent_but_before_sending_delivers_once(
    discord_emu: DiscordEmulator, world: World, gateway: HeldAudioGateway, tmp_path: Path
) -> None:
    gateway.suno_clips_per_job = 1
    gateway.suno_polls_before_finished = 1
    gateway.hold_audio = asyncio.Event()
    settings = song_settings(discord_emu, gateway, tmp_path, song_lease=LEASE)
    process = await start_bot_process(discord_emu, world, settings, tmp_path)
    try:
        await suno(discord_emu, world, "Intent but no message")
        await asyncio.wait_for(gateway.audio_requested.wait(), timeout=15)
    finally:
        await kill(process)
    [row] = await rows(settings.database_url)
    assert row.status == "delivering" and deliveries(discord_emu, world) == []
    gateway.hold_audio.set()
    async with running_bot(discord_emu, settings, sync=False):
        await until(lambda: len(deliveries(discord_emu, world)) == 1, within=20)
        await asyncio.sleep(1)
    assert len(deliveries(discord_emu, world)) == 1
    [row] = await rows(settings.database_url)
    assert row.status == "done"
