"""Process figures: `python -m bot run` start → ready time and resident memory once ready."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.results import Figure
from bench.world import BotProcess, bot_env
from tests.e2e.harness import build_world
from tests.emulators.discord_emulator import DiscordEmulator

READY_LOG = r"Logged in as"


async def one_start(emu: DiscordEmulator, folder: Path) -> tuple[float, float]:
    """Start the unmodified bot (no providers file), return (seconds to ready, RSS MB once ready)."""
    started = time.monotonic()
    bot = await BotProcess.spawn(bot_env(emu, folder, LOG_LEVEL="INFO"), folder, instrumented=False)
    try:
        await bot.wait_for_log(READY_LOG, timeout=60)
        seconds = time.monotonic() - started
        await asyncio.sleep(0.5)  # settle: what it holds while idle and ready
        return seconds, bot.rss_mb()
    finally:
        await bot.stop()


async def migrated(folder: Path) -> None:
    from bot.store.engine import create_engine
    from bot.store.migrate import upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'concord.db'}")
    await upgrade(engine)
    await engine.dispose()


async def measure(runs: int) -> list[Figure]:
    startup = Figure(
        "startup_s", "s", "process start → ready (emulated Discord, GUILD_READY_TIMEOUT=0.1)", "≤ 1.5"
    )
    rss = Figure("rss_ready_mb", "MB", "bot RSS once ready, idle", "≤ 80")
    async with DiscordEmulator() as emu:
        build_world(emu)
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            await migrated(folder)  # every measured start finds the schema current, as restarts do
            for _ in range(runs):
                seconds, megabytes = await one_start(emu, folder)
                startup.samples.append(seconds)
                rss.samples.append(megabytes)
    return [startup, rss]


def run(quick: bool) -> list[Figure]:
    return asyncio.run(measure(1 if quick else 5))
