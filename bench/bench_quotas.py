"""Quota figures: consume throughput (ops/s) on a SQLite file for N concurrent users, plus the denial path."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.services.guild_config import GuildConfigService
from bot.services.quotas import Feature, Plan, QuotaExceeded, QuotaService, Window, parse_custom_limits
from bot.store.engine import create_engine, create_sessionmaker
from bot.store.migrate import upgrade

OPS = 2000
GUILD = 42


async def consume_round(
    quotas: QuotaService, users: int, feature: Feature, guild_id: int | None
) -> tuple[float, int]:
    """OPS consumptions spread over `users` users, all in flight at once; returns (ops/s, denied)."""
    per_user = OPS // users
    denied = 0

    async def one_user(user_id: int) -> None:
        nonlocal denied
        for _ in range(per_user):
            try:
                await quotas.consume(user_id, feature, guild_id=guild_id)
            except QuotaExceeded:
                denied += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_user(1_000_000 + u) for u in range(users)))
    elapsed = time.perf_counter() - started
    return per_user * users / elapsed, denied


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        # An operator plan giving LLM a million a minute and a day, so every call is granted.
        million = {Window.MINUTE: 1_000_000, Window.HOUR: None, Window.DAY: 1_000_000}
        generous = Plan("bench", {Feature.LLM: million}, None)
        quotas = QuotaService(sessions, default_plan="bench", plans={"bench": generous})
        for users in (1, 10, 20):
            rate, _ = await consume_round(quotas, users, Feature.LLM, None)
            print(
                f"quota consume (global: 2 windows, granted), SQLite, {users:>2} concurrent users: "
                f"{rate:,.0f} ops/s"
            )
        # The same in a server with its own caps: 4 windows (global and server) in one statement.
        await GuildConfigService(sessions).set_role_plan(
            GUILD, 1, GUILD, parse_custom_limits("llm.minute=1000000 llm.day=1000000"), role_guild_id=GUILD
        )
        rate, _ = await consume_round(quotas, 20, Feature.LLM, GUILD)
        print(
            "quota consume (global + server: 4 windows, granted), SQLite, 20 concurrent users: "
            f"{rate:,.0f} ops/s"
        )
        # Free plan imagine is 20/day: after each user's first 20, every call is a denial.
        rate, denied = await consume_round(QuotaService(sessions), 10, Feature.IMAGINE, None)
        print(f"quota consume (denied), SQLite, 10 concurrent users: {rate:,.0f} ops/s ({denied} denied)")
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
