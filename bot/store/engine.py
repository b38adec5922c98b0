"""Builds the async engine and the one session factory the whole process shares."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    """Create the engine; for SQLite, make sure the folder exists and turn on WAL and foreign keys."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection for the whole process: SQLite takes one writer at a time, and writers on
        # separate connections wait for each other in SQLite's busy handler, which sleeps in steps of up
        # to 100 ms. Queued for the one connection instead, a short unit of work waits only for the ones
        # ahead of it (each well under a millisecond).
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            # Sessions end their own transactions; a second rollback on return would be one more trip
            # to the database thread per unit of work, for nothing.
            pool_reset_on_return=None,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> float:
    """Round-trip a trivial query; returns the latency in milliseconds."""
    started = time.perf_counter()
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


def upsert_insert(session: AsyncSession) -> Any:
    """The dialect's `insert` construct, which has `on_conflict_do_update/nothing` (SQLite and PostgreSQL)."""
    return dialect_insert(session.get_bind().dialect.name)


def dialect_insert(name: str) -> Any:
    """`insert` of the SQLite or PostgreSQL dialect (imported on first use: a SQLite bot never loads the
    PostgreSQL dialect, 2 MB)."""
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    raise RuntimeError(f"Concord's store needs SQLite or PostgreSQL, not {name}")
