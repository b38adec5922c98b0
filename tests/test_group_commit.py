"""Group commit: units of work submitted together share one transaction, and one unit's error stays its
own. Then the chat case: a turn's quota take and its question commit together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.services.config_cache import ConfigCache
from bot.services.conversations import ConversationStore, Turn
from bot.services.quotas import Feature, QuotaService
from bot.store.group_commit import GroupCommit
from bot.store.models import ConversationMessage, QuotaUsage


class Commits:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.count = 0

    def __enter__(self) -> Commits:
        event.listen(self.engine, "commit", self._seen)
        return self

    def __exit__(self, *_: Any) -> None:
        event.remove(self.engine, "commit", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


async def note(connection: AsyncConnection, content: str) -> str:
    await connection.execute(
        text(
            "INSERT INTO conversations (channel_id, guild_id, created_at) VALUES (:c, 1, CURRENT_TIMESTAMP)"
        ),
        {"c": len(content)},
    )
    return content


async def test_units_submitted_together_share_one_commit(db_engine: AsyncEngine) -> None:
    group = GroupCommit(db_engine)
    with Commits(db_engine) as commits:
        results = await asyncio.gather(
            group.submit(lambda c: note(c, "a")), group.submit(lambda c: note(c, "bb"))
        )
    assert results == ["a", "bb"]
    assert commits.count == 1
    async with db_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM conversations")) == 2


async def test_one_units_error_is_not_anothers(db_engine: AsyncEngine) -> None:
    group = GroupCommit(db_engine)

    async def broken(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO no_such_table VALUES (1)"))

    ok = group.submit(lambda c: note(c, "kept"))
    bad = group.submit(broken)
    assert await ok == "kept"
    with pytest.raises(Exception, match="no_such_table"):
        await bad
    async with db_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM conversations")) == 1  # once, not twice


async def test_closing_lets_submitted_work_commit_and_returns_its_connection(db_engine: AsyncEngine) -> None:
    group = GroupCommit(db_engine)

    async def slow(connection: AsyncConnection) -> str:
        await asyncio.sleep(0.05)
        return await note(connection, "late")

    pending = group.submit(slow)  # submitted, not yet run, when shutdown begins
    await group.close()
    assert pending.done() and pending.result() == "late"
    assert db_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with db_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM conversations")) == 1


async def test_a_turns_quota_and_question_commit_together(
    db_engine: AsyncEngine, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    group = GroupCommit(db_engine)
    # The free plan (every turn counts), with the bot's few seconds of plan caching.
    quotas = QuotaService(db_sessions, group=group, cache=ConfigCache(10))
    store = ConversationStore(db_sessions, group=group)
    await store.append(5, 1, [Turn(role="user", content="first", author_id=9, author_name="x")])
    async with quotas.reserve(9, Feature.LLM) as warm:  # the user's plan is then known (cached), as in a
        warm.keep()  # live bot, so the take is submitted in the same moment as the question
    with Commits(db_engine) as commits:
        begun = store.begin_turn(5, 1, Turn(role="user", content="hi", author_id=9, author_name="x"))
        async with quotas.reserve(9, Feature.LLM) as reservation:
            ids = await begun
            reservation.keep()
    assert commits.count == 1
    async with db_sessions() as session:
        assert await session.scalar(select(func.min(QuotaUsage.used))) == 2  # each window, once a turn
        assert await session.scalar(select(func.count(ConversationMessage.id))) == 3
    assert ids[1] == ids[0] + 1
