"""Service fixtures: a settable clock, and a migrated PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.engine import create_engine
from bot.store.migrate import upgrade


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    # Start just after a day boundary so every window is fresh and its end is easy to reach.
    return FakeClock(86400 * 19700 + 1.0)


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database on the session's PostgreSQL server (tests/conftest.py)."""
    engine = create_engine(postgres_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()
