"""The bot process under benchmark: `python -m bot run`, plus counters the parent reads over stdin/stdout.

Runs in its own process (the emulators and the driver stay in the parent), so its CPU time and memory
are the bot's alone. Counts every database round trip (SQLAlchemy cursor executes, commits, rollbacks)
and samples event-loop lag. Commands, one per stdin line, answered with one JSON line on stdout:
`stats`, `reset`, `lag on` / `lag off`, `trace on` / `trace off` (what each round trip was),
`clear_peak` (resets the peak-RSS mark), `memory` (top allocations, with BENCH_TRACEMALLOC=1),
`voice` (when each Opus packet was played, with BENCH_VOICE=loopback), and `profile on` /
`profile off PATH` (cProfile of the event-loop thread, written to PATH for `pstats`; it slows the bot
down, so no figures while it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

LAG_PERIOD = 0.01


class Counters:
    def __init__(self) -> None:
        self.sampling = False  # lag sampling wakes the loop 100 times a second: only while asked
        self.executes = 0
        self.commits = 0
        self.rollbacks = 0
        self.lags: list[float] = []
        self.tracing = False
        self.trace: list[str] = []
        """What each round trip was (statement start, COMMIT, ROLLBACK), kept while `trace on`."""
        self.gc_started = 0.0
        self.gc_pauses: list[tuple[int, float]] = []
        """(generation, seconds) of each garbage collection since the last reset."""
        self.voice_packets: list[float] = []
        """When each Opus packet of speech was handed to the voice connection (BENCH_VOICE=loopback)."""

    def reset(self) -> None:
        self.executes = self.commits = self.rollbacks = 0
        self.lags = []
        self.trace = []
        self.gc_pauses = []
        self.voice_packets = []

    def note(self, what: str) -> None:
        if self.tracing:
            self.trace.append(" ".join(what.split())[:90])


COUNTERS = Counters()
PROFILER = cProfile.Profile()


def _time_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        COUNTERS.gc_started = time.perf_counter()
    else:
        COUNTERS.gc_pauses.append((info["generation"], time.perf_counter() - COUNTERS.gc_started))


gc.callbacks.append(_time_gc)


def _count_execute(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
    COUNTERS.executes += 1
    COUNTERS.note(statement)


def _count_commit(*_: Any) -> None:
    COUNTERS.commits += 1
    COUNTERS.note("COMMIT")


def _count_rollback(*_: Any) -> None:
    COUNTERS.rollbacks += 1
    COUNTERS.note("ROLLBACK")


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in KiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def stats() -> dict[str, Any]:
    lags = sorted(COUNTERS.lags)
    status = proc_status()
    return {
        "cpu_s": time.process_time(),  # every thread of this process, ns resolution
        # Child processes (FFmpeg for voice) once they have exited and been waited for.
        "children_cpu_s": (children := resource.getrusage(resource.RUSAGE_CHILDREN)).ru_utime
        + children.ru_stime,
        "executes": COUNTERS.executes,
        "commits": COUNTERS.commits,
        "rollbacks": COUNTERS.rollbacks,
        "round_trips": COUNTERS.executes + COUNTERS.commits + COUNTERS.rollbacks,
        "lag_samples": len(lags),
        "lag_p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000 if lags else 0.0,
        "lag_max_ms": lags[-1] * 1000 if lags else 0.0,
        "rss_kb": status.get("VmRSS", 0),
        "gc": {
            f"gen{generation}": {
                "count": len(pauses),
                "max_ms": round(max(pauses, default=0.0) * 1000, 2),
                "total_ms": round(sum(pauses) * 1000, 1),
            }
            for generation in (0, 1, 2)
            if (pauses := [s for g, s in COUNTERS.gc_pauses if g == generation])
        },
        "trace": list(COUNTERS.trace),
        "hwm_kb": status.get("VmHWM", 0),
    }


def memory_top(limit: int = 25) -> list[str]:
    """Where the live Python allocations are, by source line (only with BENCH_TRACEMALLOC=1, which
    starts tracemalloc before the bot imports anything; it slows the bot down, so no figures then)."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return ["tracemalloc is off: start the bot with BENCH_TRACEMALLOC=1"]
    stats = tracemalloc.take_snapshot().statistics("lineno")
    total = sum(stat.size for stat in stats)
    lines = [f"total {total / 2**20:.1f} MiB in {sum(stat.count for stat in stats):,} blocks"]
    lines += [f"{stat.size / 2**20:7.2f} MiB {stat.count:8,} {stat.traceback}" for stat in stats[:limit]]
    return lines


async def sample_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        if not COUNTERS.sampling:
            await asyncio.sleep(0.2)
            continue
        started = loop.time()
        await asyncio.sleep(LAG_PERIOD)
        COUNTERS.lags.append(max(0.0, loop.time() - started - LAG_PERIOD))


async def serve_control() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = line.decode().strip()
        answer: dict[str, Any]
        if command == "stats":
            answer = stats()
        elif command == "reset":
            COUNTERS.reset()
            answer = {"ok": True}
        elif command in ("lag on", "lag off"):
            COUNTERS.sampling = command == "lag on"
            answer = {"ok": True}
        elif command in ("trace on", "trace off"):
            COUNTERS.tracing = command == "trace on"
            answer = {"ok": True}
        elif command == "profile on":
            PROFILER.enable()
            answer = {"ok": True}
        elif command.startswith("profile off "):
            PROFILER.disable()
            PROFILER.dump_stats(command.removeprefix("profile off "))
            PROFILER.clear()
            answer = {"ok": True}
        elif command == "voice":
            answer = {"packets": list(COUNTERS.voice_packets)}
        elif command == "memory":
            answer = {"top": memory_top()}
        elif command == "clear_peak":
            with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:  # noqa: ASYNC230
                refs.write("5")
            answer = {"ok": True}
        else:
            answer = {"error": f"unknown command {command!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    os._exit(0)  # the parent went away: stop at once


def use_loopback_voice() -> None:
    """Voice as the tests have it: the real discord.py VoiceClient, player thread, FFmpeg and Opus
    encoder, with only the voice server's edges (websocket, UDP) loopback; each packet's time is kept."""
    from bot.app import Concord
    from tests.e2e.voice_loopback import LoopbackVoiceClient

    class TimedVoiceClient(LoopbackVoiceClient):
        def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
            super().send_audio_packet(data, encode=encode)
            if encode:
                COUNTERS.voice_packets.append(time.monotonic())

    setup_hook = Concord.setup_hook

    async def with_loopback_voice(self: Concord) -> None:
        self.voice.client_cls = TimedVoiceClient
        await setup_hook(self)

    Concord.setup_hook = with_loopback_voice  # type: ignore[method-assign]


async def main() -> None:
    # Imported here so the counters above are installed before the bot creates its engine.
    from bot import __main__ as cli
    from bot.config import load_settings
    from bot.logging_setup import setup_logging

    if os.environ.get("BENCH_VOICE") == "loopback":
        use_loopback_voice()
    settings = load_settings()
    setup_logging(settings.log_level)
    tasks = [asyncio.create_task(sample_lag()), asyncio.create_task(serve_control())]
    try:
        await cli.run(settings)
    finally:
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    if os.environ.get("BENCH_TRACEMALLOC") == "1":
        import tracemalloc

        tracemalloc.start()
    event.listen(Engine, "before_cursor_execute", _count_execute)
    event.listen(Engine, "commit", _count_commit)
    event.listen(Engine, "rollback", _count_rollback)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
