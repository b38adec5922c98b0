"""Chat figures: reply splitting throughput, context building on a 10k-message channel, and what the
per-channel write budget allows (writes per second, final-edit latency). Prints one line per figure."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.discordkit.splitting import split_message
from bot.discordkit.write_budget import ChannelWriteBudget, Priority
from bot.services.conversations import ConversationStore, Turn, build_context
from bot.store.engine import create_engine, create_sessionmaker
from bot.store.migrate import upgrade


def bench_splitting() -> None:
    prose = " ".join(f"word{i}" for i in range(4000))
    code = "```python\n" + "\n".join(f"    value_{i} = compute({i})" for i in range(2000)) + "\n```"
    text = (prose + "\n\n" + code + "\n\n") * 5
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        pages = split_message(text)
    elapsed = time.perf_counter() - started
    mb = len(text) * rounds / 1e6
    print(
        f"splitting: {mb / elapsed:.1f} MB/s ({len(text):,} chars -> {len(pages)} messages, "
        f"{elapsed / rounds * 1000:.1f} ms each)"
    )
    # A streamed reply re-splits its whole text at every edit: the cost of one such pass at 20k chars.
    reply = text[:20_000]
    started = time.perf_counter()
    for _ in range(200):
        split_message(reply, 1880)
    print(
        f"splitting: one 20,000-char streaming re-split {(time.perf_counter() - started) / 200 * 1000:.2f} ms"
    )


async def bench_context() -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{folder}/bench.db")
        await upgrade(engine)
        store = ConversationStore(create_sessionmaker(engine))
        channel = 42
        started = time.perf_counter()
        for block in range(50):  # 10,000 messages in 50 transactions
            turns = []
            for i in range(100):
                n = block * 100 + i
                turns.append(
                    Turn(role="user", content=f"question {n} " + "q" * 200, author_id=1, author_name="u")
                )
                turns.append(Turn(role="assistant", content=f"answer {n} " + "a" * 400, model="m"))
            await store.append(channel, 1, turns)
        print(f"context: stored 10,000 messages in {time.perf_counter() - started:.2f} s")
        prompt = Turn(role="user", content="and now?", author_name="u")
        for budget in (3000, 30_000):
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                history = await store.recent(channel, budget, "tokens")
                build_context(None, history, prompt)
                timings.append(time.perf_counter() - started)
            timings.sort()
            print(
                f"context: {budget:,}-token budget on a 10,000-message channel: {len(history)} turns, "
                f"median {timings[len(timings) // 2] * 1000:.1f} ms"
            )
        await engine.dispose()


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, future))
        await future

    async def run_until(self, end: float, step: float = 0.01) -> None:
        while self.now < end:
            self.now += step
            for deadline, future in list(self.sleepers):
                if deadline <= self.now and not future.done():
                    future.set_result(None)
                    self.sleepers.remove((deadline, future))
            for _ in range(5):
                await asyncio.sleep(0)


async def bench_budget() -> None:
    """Two streamed replies' worth of interim edits plus a progress bar in one channel for 60 virtual
    seconds, then a final edit: how many writes went out, and how long the final one waited."""
    clock = VirtualClock()
    budget = ChannelWriteBudget(clock=clock, sleep=clock.sleep)
    written: list[float] = []

    def op() -> asyncio.Future[None]:
        written.append(clock.now)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def write() -> None:
        await op()

    async def feeders() -> None:
        while clock.now < 60:
            for key in ("reply", "bar"):
                budget.submit(1, write, priority=Priority.PROGRESS, key=key)
            await clock.sleep(0.5)

    task = asyncio.create_task(feeders())
    await clock.run_until(60)
    final = budget.submit(1, write, priority=Priority.FINAL, key="reply")
    submitted = clock.now
    while not final.done():
        await clock.run_until(clock.now + 0.01)
    task.cancel()
    worst = max(sum(1 for u in written if t <= u < t + 5.0) for t in written)
    print(
        f"budget: {len(written) / 60:.2f} writes/s sustained in one busy channel (limit 4 per 5.5 s, "
        f"1 reserved), worst 5-s window {worst} writes (Discord allows 5)"
    )
    waited = (clock.now - submitted) * 1000
    print(f"budget: final edit waited {waited:.0f} ms (virtual time) in a saturated channel")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def bench_burst() -> None:
    """The real bot against the emulators: 20 mentions over 5 channels, message -> model request."""
    from tests.e2e.chat_burst import run_burst
    from tests.e2e.harness import build_world
    from tests.emulators.discord_emulator import DiscordEmulator

    emu = DiscordEmulator()
    await emu.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            # A cap of 20 provider calls lets all 20 turns stream at once (the default cap is 8).
            result = await run_burst(emu, build_world(emu), Path(folder), chat_max_concurrency=20)
        delays = result.request_delays_ms()
        print(
            "burst: message -> model request over 20 mentions in 5 channels (CHAT_MAX_CONCURRENCY=20): "
            f"p50 {_percentile(delays, 0.5):.0f} ms, p90 {_percentile(delays, 0.9):.0f} ms, "
            f"max {delays[-1]:.0f} ms; "
            f"{len(emu.rate_limited)} x 429 from Discord"
        )
    finally:
        await emu.close()


async def bench_token_lag(tokens: int = 60) -> None:
    """One streamed reply alone in its channel, `tokens` tokens 50 ms apart: how long after the model sent
    a token it became visible in Discord, and how long the final edit took after the last token."""
    from tests.e2e.harness import build_world, chat_settings, final_from, running_bot
    from tests.emulators.discord_emulator import DiscordEmulator
    from tests.emulators.gateway import GatewayEmulator

    emu = DiscordEmulator()
    await emu.start()
    gateway = GatewayEmulator("openai", stream_chunks=[f"w{i} " for i in range(tokens)], chunk_interval=0.05)
    try:
        world = build_world(emu)
        with tempfile.TemporaryDirectory() as folder:
            async with gateway, running_bot(emu, chat_settings(emu, gateway, Path(folder))):
                me = emu.bot_user.id
                await emu.send_message(world.member, world.general, f"<@{me}> stream please")
                await emu.wait_for_message(world.general, final_from(emu), timeout=20)
        writes = [
            r
            for r in emu.requests
            if r.method in ("POST", "PATCH") and "/messages" in r.path and isinstance(r.json, dict)
        ]
        lags = []
        prefix = ""
        for sent_at, piece in gateway.streamed:
            prefix += piece
            shown = next(
                (r.time for r in writes if (r.json.get("content") or "").startswith(prefix.rstrip())), None
            )
            if shown is not None:
                lags.append(shown - sent_at)
        final_lag = (writes[-1].time - gateway.streamed[-1][0]) * 1000
        empty = sum(1 for r in writes if r.headers.get("X-RateLimit-Remaining") == "0")
        print(
            f"streaming: {tokens} tokens 50 ms apart: mean token visibility lag "
            f"{sum(lags) / len(lags) * 1000:.0f} ms ({len(writes)} writes), "
            f"last token -> final edit {final_lag:.0f} ms, "
            f"{len(emu.rate_limited)} x 429, {empty} responses at X-RateLimit-Remaining: 0"
        )
    finally:
        await emu.close()


def main() -> None:
    logging.disable(logging.WARNING)
    bench_splitting()
    asyncio.run(bench_context())
    asyncio.run(bench_budget())
    asyncio.run(bench_burst())
    asyncio.run(bench_token_lag(60))
    asyncio.run(bench_token_lag(200))


if __name__ == "__main__":
    main()
