"""Context building (`history_ms`) on a SQLite file whose channel holds 1k … 1M stored messages.

The figure is a live bot's turn after turn (the store keeps the channel's newest rows in memory once it has
read them); `extra.cold_*` is the read from the database alone, as a bot's first turn in a channel after a
start. The rows are bulk-inserted behind the store's back, so each size gets stores of its own."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.results import Figure, percentile

CHANNEL = 42
GUILD = 7
BUDGET = 3000  # the default CHAT_HISTORY_BUDGET (tokens)
BATCH = 20_000


async def measure(sizes: tuple[int, ...], runs: int) -> list[Figure]:
    from sqlalchemy import insert

    from bot.services.conversations import ConversationStore, Turn, build_context
    from bot.store.engine import create_engine, create_sessionmaker
    from bot.store.migrate import upgrade
    from bot.store.models import ConversationMessage

    figures = []
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'history.db'}")
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        store = ConversationStore(sessions)
        # The first turn through the store creates the conversation; the rest are bulk-inserted rows.
        await store.append(CHANNEL, GUILD, [Turn(role="user", content="first", author_id=1, author_name="u")])
        async with sessions() as session:
            conversation_id = await session.scalar(
                ConversationMessage.__table__.select().with_only_columns(ConversationMessage.conversation_id)
            )
        stored = 1
        prompt = Turn(role="user", content="and now?", author_name="u")
        for size in sizes:
            while stored < size:
                count = min(BATCH, size - stored)
                rows = [
                    {
                        "conversation_id": conversation_id,
                        "role": "user" if (stored + i) % 2 == 0 else "assistant",
                        "author_id": 1,
                        "author_name": "u",
                        "content": f"message {stored + i} " + "lorem ipsum dolor sit amet " * 8,
                        "model": None,
                        "token_estimate": 60,
                        "incomplete": False,
                        "discord_message_ids": [],
                    }
                    for i in range(count)
                ]
                async with sessions() as session, session.begin():
                    await session.execute(insert(ConversationMessage), rows)
                stored += count
            figure = Figure(
                f"history_ms@{size // 1000}k" if size < 1_000_000 else "history_ms@1M",
                "ms",
                f"read the {BUDGET}-token history and build the context, {size:,} stored messages",
                "p50 ≤ 3" if size == 100_000 else "flat",
            )
            live = ConversationStore(sessions)
            await live.recent(CHANNEL, BUDGET, "tokens")  # warm the page cache as a live bot would have
            cold: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                history = await live.recent(CHANNEL, BUDGET, "tokens")
                build_context(None, history, prompt)
                figure.samples.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                history = await ConversationStore(sessions).recent(CHANNEL, BUDGET, "tokens")
                build_context(None, history, prompt)
                cold.append((time.perf_counter() - started) * 1000)
            figure.extra["turns_in_context"] = len(history)
            figure.extra["cold_p50_ms"] = round(percentile(cold, 0.5), 2)
            figure.extra["cold_p99_ms"] = round(percentile(cold, 0.99), 2)
            figures.append(figure)
        await engine.dispose()
    return figures


async def run_async(quick: bool) -> list[Figure]:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000, 1_000_000)
    try:
        return await measure(sizes, 20 if quick else 50)
    except Exception as exc:  # the store's interface changed: say so instead of failing the whole bench
        return [Figure("history_ms", "ms", "context building", "p50 ≤ 3", na=f"{type(exc).__name__}: {exc}")]


def run(quick: bool) -> list[Figure]:
    return asyncio.run(run_async(quick))
