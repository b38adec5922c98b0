"""Benchmark: slash-command round trips through the real discord.py client and the loopback Discord.

Prints start-up time (process-internal: resources, migrations, login, READY) and /ping latency
sequentially and concurrently. Figures include the emulator's own cost, on the same two cores.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.harness import build_world, emulator_settings, running_bot, sqlite_url
from tests.emulators.discord_emulator import DiscordEmulator

SEQUENTIAL = 200
CONCURRENT = 50


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def one_ping(emu: DiscordEmulator, user: object, channel: object) -> float:
    started = time.perf_counter()
    itx = await emu.run_command(user, "ping", channel=channel)
    await itx.wait_for_response(timeout=10)
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    emu = DiscordEmulator()
    await emu.start()
    world = build_world(emu)
    with tempfile.TemporaryDirectory() as folder:
        settings = emulator_settings(emu, sqlite_url(Path(folder)), log_level="ERROR")
        started = time.perf_counter()
        async with running_bot(emu, settings) as _bot:
            startup_ms = (time.perf_counter() - started) * 1000
            sequential = [await one_ping(emu, world.member, world.general) for _ in range(SEQUENTIAL)]
            burst_started = time.perf_counter()
            concurrent = await asyncio.gather(
                *(one_ping(emu, world.member, world.general) for _ in range(CONCURRENT))
            )
            burst_seconds = time.perf_counter() - burst_started
    await emu.close()
    print(f"start-up to ready + sync: {startup_ms:.0f} ms")
    print(
        f"/ping sequential x{SEQUENTIAL}: p50 {statistics.median(sequential):.1f} ms, "
        f"p95 {percentile(sequential, 0.95):.1f} ms"
    )
    print(
        f"/ping concurrent x{CONCURRENT}: p50 {statistics.median(concurrent):.1f} ms, "
        f"p95 {percentile(list(concurrent), 0.95):.1f} ms, {CONCURRENT / burst_seconds:.0f} interactions/s"
    )


if __name__ == "__main__":
    asyncio.run(main())
