"""Per-reply figures through the real bot: CPU per streamed reply, token lag, 429s, database round trips
per turn, and message → provider request latency (alone and in a burst)."""

from __future__ import annotations

import asyncio
import gc
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import Figure, percentile
from bench.world import Bench, IdleCpu, bench_world, is_final, wait_until

TOKENS = 200
RATE = 40.0  # tokens per second
SETTLE = 0.3  # seconds after a reply is final before its CPU and statements are read
BUCKET = 5.0  # Discord's per-channel write window: a reply alone in its channel starts on a fresh one


def reply_chunks() -> list[str]:
    """200 numbered tokens, so the moment each one becomes visible can be found in the bot's writes."""
    return [f"w{i:03d} " for i in range(TOKENS)]


def final_reply_after(bench: Bench, channel: Any, after: float) -> bool:
    me = bench.emu.bot_user.id
    return any(
        m["_author_id"] == me and is_final(m)
        for m in bench.emu.messages(channel)
        if int(m["id"]) > int(after)
    )


def visible_times(bench: Bench, channel: Any, since: float, markers: list[str]) -> dict[str, float]:
    """When each marker first appeared in the bot's messages in `channel` (replaying its sends/edits)."""
    route = re.compile(rf"^/channels/{channel.id}/messages(?:/(\d+))?$")
    contents: dict[int, str] = {}
    seen: dict[str, float] = {}
    for request in bench.emu.requests:
        match = route.match(request.path)
        if (
            request.time < since
            or not match
            or request.method not in ("POST", "PATCH")
            or request.status >= 300
        ):
            continue
        body = request.json or {}
        if "content" not in body:
            continue
        message_id = int(match.group(1) or (request.response or {}).get("id", 0))
        contents[message_id] = body.get("content") or ""
        shown = "".join(contents[k] for k in sorted(contents))
        for marker in markers:
            if marker not in seen and marker in shown:
                seen[marker] = request.time
    return seen


def final_reply_to(bench: Bench, channel: Any, message_id: Any) -> bool:
    """The reply to that very message is finished (its last page offers Regenerate; a reply of several
    pages quotes the question on its first page only, so the pages after it count too)."""
    me = bench.emu.bot_user.id
    replying = False
    for m in bench.emu.messages(channel):
        if m["_author_id"] != me:
            continue
        reference = (m.get("message_reference") or {}).get("message_id")
        if reference is not None:
            replying = str(reference) == str(message_id)
        if replying and is_final(m):
            return True
    return False


async def channel_alone(bench: Bench, channel: Any) -> None:
    """Wait until the bot's last message write in `channel` is a whole write window old, so the next
    reply has the channel's bucket to itself (the previous reply's last writes are not in its window)."""
    route = re.compile(rf"^/channels/{channel.id}/messages")
    last = max(
        (r.time for r in bench.emu.requests if r.method in ("POST", "PATCH") and route.match(r.path)),
        default=0.0,
    )
    await asyncio.sleep(max(0.0, last + BUCKET + 0.05 - time.monotonic()))


async def mention(bench: Bench, user: Any, channel: Any, prompt: str) -> dict[str, Any]:
    return await bench.emu.send_message(user, channel, f"{bench.emu.bot_user.mention} {prompt}")


async def streamed_replies(bench: Bench, runs: int, idle: float) -> dict[str, Figure]:
    cpu = Figure("cpu_ms_per_reply", "ms", "bot CPU, one 200-token reply streamed at 40 tok/s", "≤ 40")
    lag = Figure(
        "token_lag_ms",
        "ms",
        "mean per reply of (visible − model send) over its tokens, channel's write bucket fresh",
        "≤ 650",
    )
    final = Figure(
        "final_edit_ms", "ms", "the model's last token → the write that shows it, same reply", "≤ 100"
    )
    limited = Figure("discord_429s_per_reply", "count", "429 answers from Discord during one reply", "0")
    trips = Figure(
        "db_round_trips_per_mention_turn", "count", "DB round trips, one streamed mention turn", ""
    )
    bench.gateway.stream_chunks = reply_chunks()
    bench.gateway.chunk_interval = 1 / RATE
    channel, user = bench.channels[0], bench.users[0]
    markers = [c.strip() for c in reply_chunks()]
    warm = await mention(bench, user, channel, "warm up")  # first-use costs are not a reply's
    await wait_until(lambda: final_reply_after(bench, channel, warm["id"]), 60, "the warm-up reply")
    # The bot's idle CPU (heartbeats, the song runner's reads) over a reply's length is subtracted from
    # each reply. Its rate is pooled over every quiet wait of the runs (a periodic task that falls into
    # one short window or not would otherwise swing the figure by several ms).
    idle_cpu = IdleCpu()
    spent: list[tuple[float, float]] = []  # (CPU seconds, wall seconds) of each reply
    await asyncio.sleep(SETTLE)  # the warm-up reply's last writes are behind it
    await idle_cpu.measure(bench.bot, asyncio.sleep(idle))
    for run in range(runs):
        await idle_cpu.measure(bench.bot, channel_alone(bench, channel))
        bench.gateway.streamed.clear()
        await bench.bot.ask("reset")
        before = await bench.bot.stats()
        limited_before = len(bench.emu.rate_limited)
        started = time.monotonic()
        message = await mention(bench, user, channel, f"count for me, run {run}")
        await wait_until(lambda m=message: final_reply_after(bench, channel, m["id"]), 60, "a streamed reply")
        elapsed = time.monotonic() - started
        await asyncio.sleep(SETTLE)
        after = await bench.bot.stats()
        spent.append((after["cpu_s"] - before["cpu_s"], elapsed + SETTLE))
        trips.samples.append(after["round_trips"] - before["round_trips"])
        limited.samples.append(len(bench.emu.rate_limited) - limited_before)
        emptied = sum(
            1
            for r in bench.emu.requests
            if r.time >= started
            and f"/channels/{channel.id}/messages" in r.path
            and r.headers.get("X-RateLimit-Remaining") == "0"
        )
        limited.extra["bucket_emptied"] = limited.extra.get("bucket_emptied", 0) + emptied
        sent = {piece.strip(): at for at, piece in bench.gateway.streamed}
        shown = visible_times(bench, channel, started, markers)
        lags = [shown[m] - sent[m] for m in markers if m in sent and m in shown]
        if len(lags) == len(markers):
            lag.samples.append(sum(lags) / len(lags) * 1000)
            final.samples.append(lags[-1] * 1000)
        else:
            lag.extra.setdefault("incomplete_runs", 0)
            lag.extra["incomplete_runs"] += 1
    cpu.samples = [(used - idle_cpu.per_s * seconds) * 1000 for used, seconds in spent]
    cpu.extra["idle_cpu_ms_per_s"] = round(idle_cpu.per_s * 1000, 2)
    cpu.extra["idle_seconds_pooled"] = round(idle_cpu.seconds, 1)
    bench.gateway.stream_chunks = None
    bench.gateway.chunk_interval = 0.0
    return {f.name: f for f in (cpu, lag, final, limited, trips)}


async def chat_turn_round_trips(bench: Bench, runs: int) -> list[Figure]:
    """Statements (the issue's figure) and every round trip to the database (statements plus COMMIT and
    ROLLBACK), for one /chat turn; the statements of the last run are listed in `extra`."""
    statements = Figure(
        "db_statements_per_turn", "count", "SQL statements sent to the database, one /chat turn", "≤ 4"
    )
    trips = Figure(
        "db_round_trips_per_turn",
        "count",
        "DB round trips (statements + COMMITs + ROLLBACKs), one /chat turn",
        "",
    )
    await bench.bot.ask("trace on")
    for run in range(runs):
        # Five channels in turn: after the first round, every turn continues a stored conversation.
        channel = bench.channels[1 + run % 5]
        await bench.bot.ask("reset")
        await bench.chat(bench.users[1], channel, f"turn {run}")
        await asyncio.sleep(SETTLE)
        stats = await bench.bot.stats()
        statements.samples.append(stats["executes"])
        trips.samples.append(stats["round_trips"])
        trips.extra = {k: stats[k] for k in ("executes", "commits", "rollbacks")}
        statements.extra = {"last_turn": stats["trace"]}
    await bench.bot.ask("trace off")
    return [statements, trips]


def _chat_request_for(bench: Bench, marker: str) -> Any:
    for request in reversed(bench.gateway.requests_for("chat")):
        messages = (request.json or {}).get("messages") or []
        if messages and marker in str(messages[-1].get("content")):
            return request
    return None


async def message_to_request(bench: Bench, runs: int, bursts: int) -> dict[str, Figure]:
    alone = Figure("msg_to_request_ms", "ms", "message arrives → provider request, alone", "p50 ≤ 5")
    burst = Figure(
        "msg_to_request_burst_p90_ms",
        "ms",
        "p90 of message → provider request, 20 messages over 5 channels",
        "≤ 50",
    )
    channel, user = bench.channels[0], bench.users[0]
    for run in range(runs):
        marker = f"alone-{run}-{time.monotonic_ns()}"
        started = time.monotonic()
        message = await mention(bench, user, channel, marker)
        await wait_until(lambda m=message: final_reply_after(bench, channel, m["id"]), 30, "a reply")
        request = _chat_request_for(bench, marker)
        if request is not None:
            alone.samples.append((request.time - started) * 1000)
    channels = bench.channels[:5]
    for run in range(bursts):
        # The harness's own garbage (its log of every request) is collected now, not mid-burst: a pause
        # here would delay the emulated Discord and count against the bot.
        gc.collect()
        sent: list[tuple[str, float, Any, dict[str, Any]]] = []
        for k in range(20):
            marker = f"burst-{run}-{k}-{time.monotonic_ns()}"
            where = channels[k % len(channels)]
            started = time.monotonic()
            message = await mention(bench, bench.users[k % len(bench.users)], where, marker)
            sent.append((marker, started, where, message))
        await wait_until(
            lambda sent=sent: all(_chat_request_for(bench, m) is not None for m, *_ in sent),
            120,
            "the burst's requests",
        )
        latencies = [(_chat_request_for(bench, m).time - t) * 1000 for m, t, *_ in sent]
        burst.samples.append(percentile(latencies, 0.90))
        burst.extra.setdefault("all_ms", []).extend(round(x, 2) for x in latencies)
        await wait_until(
            lambda sent=sent: all(final_reply_to(bench, w, msg["id"]) for _, _, w, msg in sent),
            120,
            "burst replies",
        )
    return {f.name: f for f in (alone, burst)}


async def run_in(bench: Bench, quick: bool) -> list[Figure]:
    """The per-reply figures, in a running world with at least 6 channels and 20 users."""
    streamed = await streamed_replies(bench, 1 if quick else 5, idle=1.0 if quick else 3.0)
    statements, round_trips = await chat_turn_round_trips(bench, 3 if quick else 20)
    latency = await message_to_request(bench, 5 if quick else 40, 1 if quick else 3)
    return [
        streamed["cpu_ms_per_reply"],
        statements,
        round_trips,
        streamed["db_round_trips_per_mention_turn"],
        latency["msg_to_request_ms"],
        latency["msg_to_request_burst_p90_ms"],
        streamed["token_lag_ms"],
        streamed["final_edit_ms"],
        streamed["discord_429s_per_reply"],
    ]


async def run(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory() as folder:
        async with bench_world(Path(folder), channels=6, users=20) as bench:
            return await run_in(bench, quick)
