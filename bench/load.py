"""Load figures through the real bot: interaction ack latency at 100/s, sustained /chat turns per second
over many channels (with event-loop lag and memory), and memory after 1,000 active conversations."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import Figure
from bench.world import Bench, bench_world, is_final, wait_until

CALLBACK = re.compile(r"^/interactions/(\d+)/[^/]+/callback$")


async def ack_latency(bench: Bench, seconds: float, rate: float = 100.0) -> Figure:
    figure = Figure("ack_ms", "ms", f"INTERACTION_CREATE → first callback, /chat at {rate:.0f}/s", "p99 ≤ 20")
    channels = bench.channels[:50]
    sent: dict[str, float] = {}
    handles: list[Any] = []
    count = int(seconds * rate)
    start = time.monotonic()
    for k in range(count):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        user = bench.users[k % len(bench.users)]
        at = time.monotonic()
        itx = await bench.emu.run_command(
            user, "chat", {"prompt": f"ack {k}"}, channel=channels[k % len(channels)]
        )
        sent[str(itx.payload["id"])] = at
        handles.append(itx)
    offered = count / (time.monotonic() - start)
    with contextlib.suppress(RuntimeError):  # turns still unfinished after a minute are counted below
        await wait_until(lambda: all(is_final(h.original) for h in handles), 60, "the acked turns")
    for request in bench.emu.requests:
        match = CALLBACK.match(request.path)
        if match and match.group(1) in sent:
            figure.samples.append((request.time - sent.pop(match.group(1))) * 1000)
    figure.extra = {
        "sent": count,
        "offered_rate_per_s": round(offered, 1),
        "unacknowledged": len(sent),
        "unfinished_turns": sum(1 for h in handles if not is_final(h.original)),
    }
    return figure


async def sustained_turns(bench: Bench, channels: int, seconds: float) -> dict[str, Any]:
    """Each of `channels` channels runs /chat turns back to back, starting new ones for `seconds`;
    turns per second = finished turns / time until the last one ended. Failures are sorted by what the
    user saw: no answer at all (not acknowledged in time), or an answer that is not a reply (e.g. busy)."""
    done = failed = 0
    failures: dict[str, int] = {}
    stop_at = time.monotonic() + seconds

    async def channel_loop(index: int) -> None:
        nonlocal done, failed
        channel = bench.channels[index]
        user = bench.users[index % len(bench.users)]
        turn = 0
        while time.monotonic() < stop_at:
            itx = await bench.emu.run_command(
                user, "chat", {"prompt": f"turn {turn} in {index}"}, channel=channel
            )
            turn += 1
            try:
                await itx.wait_for(lambda i: is_final(i.original), timeout=20)
            except AssertionError:  # no final reply in time: counted, and the channel goes on
                failed += 1
                seen = "no answer" if itx.original is None else (itx.original.get("content") or "")[:60]
                failures[seen] = failures.get(seen, 0) + 1
                continue
            done += 1

    await bench.bot.ask("reset")
    await bench.bot.ask("lag on")
    started = time.monotonic()
    await asyncio.gather(*(channel_loop(i) for i in range(channels)))
    elapsed = time.monotonic() - started
    stats = await bench.bot.stats()
    await bench.bot.ask("lag off")
    return {
        "turns_per_s": done / elapsed,
        "failed": failed,
        "failures": failures,
        "lag_p99_ms": stats["lag_p99_ms"],
        "rss_mb": stats["rss_kb"] / 1024,
        "gc_ms": sum(generation["total_ms"] for generation in stats["gc"].values()),
    }


async def converse_everywhere(bench: Bench, in_flight: int = 20) -> int:
    """One /chat turn in every channel, at most `in_flight` at once; returns the turns that finished."""
    gate = asyncio.Semaphore(in_flight)
    finished = 0

    async def one(index: int) -> None:
        nonlocal finished
        async with gate:
            with contextlib.suppress(AssertionError):
                await bench.chat(bench.users[index % len(bench.users)], bench.channels[index], "remember me")
                finished += 1

    await asyncio.gather(*(one(i) for i in range(len(bench.channels))))
    return finished


def widths(quick: bool) -> tuple[int, ...]:
    return (50,) if quick else (10, 50, 100, 1000)


async def run_in(bench: Bench, quick: bool) -> list[Figure]:
    """The load figures, in a running world with `max(widths(quick))` channels and 50 users."""
    seconds = 3.0 if quick else 10.0
    repeats = 1 if quick else 3
    turns = Figure("turns_per_s", "turns/s", "sustained /chat turns, instant provider, 50 channels", "≥ 200")
    lag = Figure("loop_lag_p99_ms", "ms", "bot event-loop lag p99 during turns_per_s (50 channels)", "≤ 50")
    growth: list[Figure] = []
    await bench.chat(bench.users[0], bench.channels[0], "warm up")  # first-use costs are not a turn's
    ack = await ack_latency(bench, 0.5 if quick else 3.0)
    for width in widths(quick):
        per_width = Figure(
            f"turns_per_s@{width}ch", "turns/s", f"sustained /chat turns over {width} channels", ""
        )
        memory = Figure(f"rss_mb@{width}ch", "MB", f"bot RSS after turns over {width} channels", "")
        lags = Figure(f"loop_lag_p99_ms@{width}ch", "ms", f"event-loop lag p99 over {width} channels", "")
        for _ in range(repeats):
            result = await sustained_turns(bench, width, seconds)
            per_width.samples.append(result["turns_per_s"])
            memory.samples.append(result["rss_mb"])
            lags.samples.append(result["lag_p99_ms"])
            lags.extra.setdefault("gc_pause_ms_per_run", []).append(round(result["gc_ms"], 1))
            per_width.extra["failed_turns"] = per_width.extra.get("failed_turns", 0) + result["failed"]
            for seen, count in result["failures"].items():
                shown = per_width.extra.setdefault("failures", {})
                shown[seen] = shown.get(seen, 0) + count
        if width == 50:
            turns.samples, lag.samples, turns.extra = per_width.samples, lags.samples, per_width.extra
        growth += [per_width, lags, memory]
    return [ack, turns, lag, *([] if quick else growth)]


async def conversations_memory(quick: bool) -> list[Figure]:
    """RSS of a fresh bot after 1,000 conversations (one per channel, started at a pace the bot can take:
    20 turns in flight), beside its RSS once ready in that same 1,000-channel server, so the figure is
    the conversations' cost and not the load figures' high-water mark."""
    figure = Figure("rss_1k_conv_mb", "MB", "bot RSS after 1,000 active conversations", "≤ ready + 30")
    if quick:
        figure.na = "a 1,000-channel server of its own: run the full `make bench`"
        return [figure]
    with tempfile.TemporaryDirectory() as folder:
        async with bench_world(Path(folder), channels=1000, users=50) as bench:
            await asyncio.sleep(1.0)  # start-up work settles
            ready = bench.bot.rss_mb()
            figure.extra["conversations"] = await converse_everywhere(bench)
            figure.samples.append(bench.bot.rss_mb())
            figure.extra["ready_same_server_mb"] = round(ready, 1)
            figure.extra["growth_mb"] = round(figure.samples[0] - ready, 1)
    return [figure]


async def run(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory() as folder:
        async with bench_world(Path(folder), channels=max(widths(quick)), users=50) as bench:
            return await run_in(bench, quick)
