"""The config cache: a guild's settings and a user's grants are read once per period; writes show at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.config_cache import ConfigCache
from bot.services.guild_config import GuildConfigService
from bot.services.plan_grants import PlanGrants
from bot.services.quotas import (
    FREE_PLAN,
    PREMIUM_PLAN,
    Feature,
    QuotaExceeded,
    QuotaService,
    parse_custom_limits,
)
from tests.services.conftest import FakeClock

USER = 111_111_111_111_111_111
GUILD = 222_222_222_222_222_222
CHANNEL = 444_444_444_444_444_444


@contextmanager
def statements(sessions: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    sent: list[str] = []
    engine = sessions.kw["bind"].sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_chat_settings_are_read_once_per_period_and_a_write_here_shows_at_once(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = GuildConfigService(db_sessions, cache=ConfigCache(60))
    with statements(db_sessions) as sent:
        for _ in range(5):
            settings = await config.chat_settings(GUILD, CHANNEL)
            await config.get(GUILD)
    assert settings.system_prompt is None
    assert len(sent) == 2  # the guild row and its channels' rows, once
    await config.set_system_prompt(GUILD, 1, CHANNEL, "Be brief.", channel_guild_id=GUILD)
    assert (await config.chat_settings(GUILD, CHANNEL)).system_prompt == "Be brief."
    await config.set_capability(GUILD, 1, "chat", False)
    assert (await config.chat_settings(GUILD, CHANNEL)).refusal() == "Chat is switched off in this server."


async def test_another_process_change_shows_within_the_period(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    monotonic = FakeClock(100.0)
    cache = ConfigCache(10, clock=monotonic)
    config = GuildConfigService(db_sessions, cache=cache)
    quotas = QuotaService(db_sessions, clock=clock, cache=cache, guild_config=config)
    other_process = GuildConfigService(db_sessions)  # shares the database, not the cache
    # This process's admin caps the server at 2 a minute: the very next call counts it.
    limits = parse_custom_limits("llm.minute=2")
    await config.set_role_plan(GUILD, 1, GUILD, limits, role_guild_id=GUILD)
    for _ in range(2):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD)
    with pytest.raises(QuotaExceeded) as denied:
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD)
    assert denied.value.by_server
    # Another process lifts the cap: seen once the period has passed, not before.
    await other_process.set_role_plan(GUILD, 1, GUILD, None, role_guild_id=GUILD)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD)
    monotonic.advance(10)
    await quotas.consume(USER, Feature.LLM, guild_id=GUILD)


async def test_a_grant_or_revoke_here_shows_at_once(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    cache = ConfigCache(60)
    quotas = QuotaService(db_sessions, clock=clock, cache=cache)
    grants = PlanGrants(db_sessions, known_plans=list(quotas.plans), clock=clock, cache=cache)
    assert await quotas.plan_for(GUILD, user_id=USER) is FREE_PLAN
    await grants.grant("server", GUILD, "premium", expires_at=None, actor_id=1)
    assert await quotas.plan_for(GUILD, user_id=USER) is PREMIUM_PLAN
    await grants.revoke("server", GUILD, actor_id=1)
    assert await quotas.plan_for(GUILD, user_id=USER) is FREE_PLAN


async def test_a_cached_grant_still_ends_on_time(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    cache = ConfigCache(3600)
    quotas = QuotaService(db_sessions, clock=clock, cache=cache)
    grants = PlanGrants(db_sessions, known_plans=list(quotas.plans), clock=clock, cache=cache)
    expires = grants.now() + timedelta(minutes=5)
    await grants.grant("user", USER, "premium", expires_at=expires, actor_id=1)
    assert await quotas.plan_for(None, user_id=USER) is PREMIUM_PLAN
    clock.advance(301)
    with statements(db_sessions) as sent:
        assert await quotas.plan_for(None, user_id=USER) is FREE_PLAN
    assert sent == []  # judged on the cached rows, without reading them again


async def test_concurrent_misses_share_one_read_and_a_read_overtaken_by_a_write_is_not_kept() -> None:
    cache = ConfigCache(60)
    reads = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal reads
        reads += 1
        await release.wait()
        return reads

    waiting = [asyncio.ensure_future(cache.get("key", load)) for _ in range(5)]
    await asyncio.sleep(0)
    cache.invalidate()  # a write committed while the read was under way
    release.set()
    assert await asyncio.gather(*waiting) == [1] * 5
    assert reads == 1
    assert await cache.get("key", load) == 2  # the overtaken answer was not kept


async def test_a_zero_period_reads_every_time() -> None:
    cache = ConfigCache(0)
    calls = []

    async def load() -> int:
        calls.append(1)
        return len(calls)

    assert [await cache.get("key", load) for _ in range(3)] == [1, 2, 3]
