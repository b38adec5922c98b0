"""Quota figures: atomic consumes per second on a SQLite file for 1, 20 and 200 concurrent users."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.results import Figure

GUILD = 42


async def consume_rate(quotas: object, users: int, ops: int) -> tuple[float, dict[str, int]]:
    """Granted consumes per second with `users` users in flight at once, and the errors by type
    (e.g. SQLite's "database is locked" when writers queue past busy_timeout)."""
    from bot.services.quotas import Feature

    per_user = max(1, ops // users)
    errors: dict[str, int] = {}

    async def one_user(user_id: int) -> None:
        for _ in range(per_user):
            try:
                await quotas.consume(user_id, Feature.LLM, guild_id=GUILD)  # type: ignore[attr-defined]
            except Exception as exc:
                key = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one_user(1_000_000 + u) for u in range(users)))
    granted = per_user * users - sum(errors.values())
    return granted / (time.perf_counter() - started), errors


async def measure(user_counts: tuple[int, ...], runs: int, ops: int) -> list[Figure]:
    from bot.services.guild_config import GuildConfigService
    from bot.services.quotas import QuotaService, parse_custom_limits
    from bot.store.engine import create_engine, create_sessionmaker
    from bot.store.migrate import upgrade

    figures = []
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'quotas.db'}")
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        # The operator's budget is not what is measured: no global caps; the server's own caps below
        # (the free plan's LLM windows with caps no run reaches) are counted per (server, user).
        quotas = QuotaService(sessions, default_plan="unlimited")
        await GuildConfigService(sessions).set_role_plan(
            GUILD, 1, GUILD, parse_custom_limits("llm.minute=10000000 llm.day=10000000"), role_guild_id=GUILD
        )
        await consume_rate(quotas, 1, 50)  # warm-up
        for users in user_counts:
            figure = Figure(
                "quota_ops_per_s" if users == 20 else f"quota_ops_per_s@{users}u",
                "ops/s",
                f"granted quota consumes (2 windows), SQLite, {users} concurrent users",
                "≥ 2,000" if users == 20 else "flat",
            )
            for _ in range(runs):
                rate, errors = await consume_rate(quotas, users, ops)
                figure.samples.append(rate)
                counted = figure.extra.setdefault("errors", {})
                for key, count in errors.items():
                    counted[key] = counted.get(key, 0) + count
            figures.append(figure)
        await engine.dispose()
    return figures


def run(quick: bool) -> list[Figure]:
    counts = (20,) if quick else (1, 20, 200)
    try:
        return asyncio.run(measure(counts, 2 if quick else 3, 200 if quick else 1000))
    except Exception as exc:  # the quota service's interface changed: say so, keep the other figures
        return [
            Figure("quota_ops_per_s", "ops/s", "quota consumes", "≥ 2,000", na=f"{type(exc).__name__}: {exc}")
        ]
