"""Quotas: each window denies at its cap and resets when it passes, atomic under concurrency, refunds."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import load_settings
from bot.errors import ConfigError, InvalidInput
from bot.providers.errors import ProviderUnavailable
from bot.providers.models import is_closed_source
from bot.services.plan_grants import PlanGrants, parse_expiry
from bot.services.plans_file import load_plans_file
from bot.services.quotas import (
    FREE_PLAN,
    PREMIUM_PLAN,
    Denial,
    Feature,
    Grant,
    Plan,
    QuotaExceeded,
    QuotaService,
    Window,
    parse_custom_limits,
    resolve_plan,
)
from bot.store.engine import create_sessionmaker
from bot.store.models import GuildSettings, QuotaUsage
from tests.services.conftest import FakeClock

USER = 111_111_111_111_111_111
GUILD = 222_222_222_222_222_222
ROLE = 333_333_333_333_333_333


@pytest.fixture
def quotas(db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> QuotaService:
    return QuotaService(db_sessions, clock=clock)


async def use(quotas: QuotaService, feature: Feature, times: int, **where: object) -> None:
    for _ in range(times):
        await quotas.consume(USER, feature, **where)  # type: ignore[arg-type]


def test_default_plans_are_the_seed_numbers() -> None:
    assert FREE_PLAN.caps(Feature.LLM) == {Window.MINUTE: 10, Window.HOUR: None, Window.DAY: 2000}
    assert FREE_PLAN.caps(Feature.CLOSED_LLM) == {Window.MINUTE: None, Window.HOUR: 25, Window.DAY: 100}
    assert FREE_PLAN.caps(Feature.IMAGINE) == {Window.MINUTE: None, Window.HOUR: None, Window.DAY: 20}
    assert PREMIUM_PLAN.caps(Feature.LLM) == {Window.MINUTE: 30, Window.HOUR: None, Window.DAY: 5000}
    assert PREMIUM_PLAN.caps(Feature.CLOSED_LLM)[Window.DAY] == 300
    assert (FREE_PLAN.max_input_chars, PREMIUM_PLAN.max_input_chars) == (1000, 5000)


async def test_minute_window_denies_at_the_limit_and_resets(quotas: QuotaService, clock: FakeClock) -> None:
    await use(quotas, Feature.LLM, 10)
    with pytest.raises(QuotaExceeded) as denied:
        await quotas.consume(USER, Feature.LLM)
    assert denied.value.window is Window.MINUTE
    reset_at = int(clock.now // 60 * 60 + 60)
    assert denied.value.resets_at == reset_at
    assert f"<t:{reset_at}:R>" in denied.value.user_message and "minute" in denied.value.user_message
    clock.advance(reset_at - clock.now)
    await quotas.consume(USER, Feature.LLM)


async def test_hour_window_denies_at_the_limit_and_resets(quotas: QuotaService, clock: FakeClock) -> None:
    for _ in range(25):
        await quotas.consume(USER, Feature.CLOSED_LLM)
    with pytest.raises(QuotaExceeded) as denied:
        await quotas.consume(USER, Feature.CLOSED_LLM)
    assert denied.value.window is Window.HOUR
    clock.advance(3599 - clock.now % 3600)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.CLOSED_LLM)  # a second before the hour ends
    clock.advance(1)
    await quotas.consume(USER, Feature.CLOSED_LLM)


async def test_day_window_denies_at_the_limit_and_resets(quotas: QuotaService, clock: FakeClock) -> None:
    for _ in range(20):
        await quotas.consume(USER, Feature.IMAGINE)
        clock.advance(61)  # the day cap is the only one; minutes passing don't help
    with pytest.raises(QuotaExceeded) as denied:
        await quotas.consume(USER, Feature.IMAGINE)
    assert denied.value.window is Window.DAY
    clock.advance(86400 - clock.now % 86400)
    await quotas.consume(USER, Feature.IMAGINE)


async def test_denial_by_a_later_window_releases_the_earlier_ones(
    quotas: QuotaService, db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # LLM free: 10/minute, 2000/day. With the day full, a denied call must not eat a minute slot.
    async with db_sessions() as session:
        session.add(
            QuotaUsage(
                user_id=USER,
                feature="llm",
                window="day",
                window_start=int(clock.now // 86400 * 86400),
                used=2000,
            )
        )
        await session.commit()
    with pytest.raises(QuotaExceeded) as denied:
        await quotas.consume(USER, Feature.LLM)
    assert denied.value.window is Window.DAY
    report = await quotas.report(USER)
    [llm] = [f for f in report.features if f.feature is Feature.LLM]
    assert {w.window: w.used for w in llm.windows} == {Window.MINUTE: 0, Window.HOUR: 0, Window.DAY: 2000}


async def test_dm_and_guild_share_one_allowance(quotas: QuotaService) -> None:
    await use(quotas, Feature.LLM, 6, guild_id=GUILD)
    await use(quotas, Feature.LLM, 4, guild_id=None)  # a DM (or a user-installed context)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM)


async def test_reservation_refunds_when_the_provider_fails(quotas: QuotaService) -> None:
    await use(quotas, Feature.LLM, 9)
    with pytest.raises(ProviderUnavailable):
        async with quotas.reserve(USER, Feature.LLM):
            raise ProviderUnavailable("chat", [])
    async with quotas.reserve(USER, Feature.LLM) as reservation:  # the refunded unit is the 10th
        assert reservation.grant is not None
    with pytest.raises(QuotaExceeded):
        async with quotas.reserve(USER, Feature.LLM):
            pytest.fail("the provider must not be called once the quota is used up")


async def test_kept_reservation_is_charged_even_if_the_block_fails(quotas: QuotaService) -> None:
    with pytest.raises(RuntimeError):
        async with quotas.reserve(USER, Feature.SONGS) as reservation:
            reservation.keep()
            raise RuntimeError("discord send failed after the song was made")
    report = await quotas.report(USER)
    [songs] = [f for f in report.features if f.feature is Feature.SONGS]
    assert {w.window: w.used for w in songs.windows if w.cap is not None} == {Window.HOUR: 1, Window.DAY: 1}


async def test_reset_gives_the_allowance_back(quotas: QuotaService) -> None:
    await use(quotas, Feature.LLM, 10)
    assert await quotas.reset(USER, Feature.LLM) >= 1
    await quotas.consume(USER, Feature.LLM)


async def test_report_shows_remaining_per_window(quotas: QuotaService, clock: FakeClock) -> None:
    await use(quotas, Feature.VISION, 3)
    report = await quotas.report(USER)
    assert report.plan is FREE_PLAN
    [vision] = [f for f in report.features if f.feature is Feature.VISION]
    by_window = {w.window: w for w in vision.windows}
    assert by_window[Window.MINUTE].remaining is None  # no per-minute limit
    assert by_window[Window.HOUR].remaining == 22
    assert by_window[Window.DAY].remaining == 97
    assert by_window[Window.HOUR].resets_at == clock.now // 3600 * 3600 + 3600


async def test_server_role_plans_are_server_caps_and_the_bypass_role_skips_only_those(
    quotas: QuotaService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    other_role, bypass = ROLE + 1, ROLE + 2
    async with db_sessions() as session:
        session.add(
            GuildSettings(
                guild_id=GUILD,
                role_plans={str(ROLE): "premium", str(other_role): {"llm": {"minute": 2}}},
                quota_bypass_role_id=bypass,
            )
        )
        await session.commit()
    context = await quotas.context(USER, GUILD, [ROLE])
    assert context.global_plan is FREE_PLAN and context.server_plan is PREMIUM_PLAN
    # A server plan looser than the user's own allowance lifts nothing: the global cap still holds.
    assert (await quotas.plan_for(GUILD, [ROLE])).caps(Feature.LLM)[Window.MINUTE] == 10
    tight = (await quotas.context(USER, GUILD, [other_role])).server_plan
    assert tight is not None and tight.caps(Feature.LLM)[Window.MINUTE] == 2
    assert tight.caps(Feature.IMAGINE)[Window.DAY] is None  # custom numbers cap only what they name
    assert (await quotas.context(USER, GUILD, [])).server_plan is None
    assert (await quotas.context(USER, GUILD, [bypass, other_role])).server_plan is None
    await use(quotas, Feature.LLM, 2, guild_id=GUILD, role_ids=[other_role])
    with pytest.raises(QuotaExceeded, match="this server's"):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD, role_ids=[other_role])
    # The bypass role skips the server's 2/minute, not the user's global 10/minute.
    await use(quotas, Feature.LLM, 8, guild_id=GUILD, role_ids=[bypass])
    with pytest.raises(QuotaExceeded, match="your"):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD, role_ids=[bypass])


def test_plan_resolution_picks_the_most_generous_cap() -> None:
    plans = {str(ROLE): "premium", str(ROLE + 1): {"imagine": {"day": 500}}}
    merged = resolve_plan(GUILD, [ROLE, ROLE + 1], plans, None)
    assert merged is not None
    assert merged.caps(Feature.IMAGINE)[Window.DAY] == 500
    assert merged.caps(Feature.LLM)[Window.MINUTE] is None  # the custom role sets no LLM cap here
    assert resolve_plan(GUILD, [ROLE], plans, None) is PREMIUM_PLAN
    # The @everyone role (id = guild id) sets the guild's default plan.
    assert resolve_plan(GUILD, [], {str(GUILD): "premium"}, None) is PREMIUM_PLAN
    assert resolve_plan(None, [ROLE], plans, None) is None  # DMs have no server caps


def test_custom_limits_parse_and_reject_nonsense() -> None:
    assert parse_custom_limits("llm.minute=5, llm.day=- vision.hour=3") == {
        "llm": {"minute": 5, "day": None},
        "vision": {"hour": 3},
    }
    for bad in ("llm=5", "music.day=3", "llm.week=3", "llm.day=lots", ""):
        with pytest.raises(InvalidInput):
            parse_custom_limits(bad)


def test_closed_source_models_count_separately() -> None:
    assert is_closed_source("gpt-4o")
    assert is_closed_source("claude-3-opus")
    assert not is_closed_source("llama-3-70b")
    assert not is_closed_source("mixtral-8x7b")


async def test_zero_cap_means_the_feature_is_off(
    quotas: QuotaService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with db_sessions() as session:
        session.add(GuildSettings(guild_id=GUILD, role_plans={str(GUILD): {"tts": {"day": 0}}}))
        await session.commit()
    with pytest.raises(QuotaExceeded, match="doesn't include"):
        await quotas.consume(USER, Feature.TTS, guild_id=GUILD)


async def _race_for_last_ten(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> list[bool]:
    quotas = QuotaService(sessions, clock=clock)
    await use(quotas, Feature.IMAGINE, 10)  # 20/day: 10 left

    async def one() -> bool:
        try:
            await quotas.consume(USER, Feature.IMAGINE)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    async with sessions() as session:
        used = await session.scalar(select(func.sum(QuotaUsage.used)).where(QuotaUsage.feature == "imagine"))
    assert used == 20
    return results


async def test_fifty_concurrent_consumptions_of_the_last_ten_grant_exactly_ten_sqlite(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    results = await _race_for_last_ten(db_sessions, clock)
    assert sum(results) == 10


async def test_fifty_concurrent_consumptions_of_the_last_ten_grant_exactly_ten_postgresql(
    pg_engine: AsyncEngine, clock: FakeClock
) -> None:
    results = await _race_for_last_ten(create_sessionmaker(pg_engine), clock)
    assert sum(results) == 10


async def test_windows_deny_and_reset_on_postgresql(pg_engine: AsyncEngine, clock: FakeClock) -> None:
    quotas = QuotaService(create_sessionmaker(pg_engine), clock=clock)
    await use(quotas, Feature.LLM, 10)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM)
    clock.advance(60)
    async with quotas.reserve(USER, Feature.LLM):
        pass
    with pytest.raises(ProviderUnavailable):
        async with quotas.reserve(USER, Feature.LLM):
            raise ProviderUnavailable("chat", [])
    report = await quotas.report(USER)
    [llm] = [f for f in report.features if f.feature is Feature.LLM]
    assert {w.window: w.used for w in llm.windows}[Window.MINUTE] == 1


# --- operator plans and the abuse paths of issue 10 ----------------------------------------------------

OTHER_GUILD = GUILD + 1


async def test_calls_spread_over_a_dm_two_servers_and_a_user_install_share_the_global_cap(
    quotas: QuotaService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Server B's admin lifts every cap of its own (custom `-`) for @everyone: that lifts nothing global.
    async with db_sessions() as session:
        session.add(
            GuildSettings(guild_id=OTHER_GUILD, role_plans={str(OTHER_GUILD): {"llm": {"minute": None}}})
        )
        await session.commit()
    user_install_guild = GUILD + 99  # a server the bot is not in: no settings, only the global cap
    places = [None, GUILD, OTHER_GUILD, user_install_guild]
    for call in range(10):
        await quotas.consume(USER, Feature.LLM, guild_id=places[call % 4])
    for guild_id in places:
        with pytest.raises(QuotaExceeded, match="your"):
            await quotas.consume(USER, Feature.LLM, guild_id=guild_id)


async def test_a_servers_reset_clears_only_its_own_counters(
    quotas: QuotaService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with db_sessions() as session:
        session.add(
            GuildSettings(guild_id=OTHER_GUILD, role_plans={str(OTHER_GUILD): {"llm": {"minute": 20}}})
        )
        await session.commit()
    await use(quotas, Feature.LLM, 10, guild_id=OTHER_GUILD)
    assert await quotas.reset(USER, Feature.LLM, scope=OTHER_GUILD) == 1  # the server's minute row
    with pytest.raises(QuotaExceeded, match="your"):
        await quotas.consume(USER, Feature.LLM, guild_id=OTHER_GUILD)
    report = await quotas.report(USER, guild_id=OTHER_GUILD)
    [llm] = [f for f in report.features if f.feature is Feature.LLM]
    [here] = [f for f in report.server_features if f.feature is Feature.LLM]
    assert {w.window: w.remaining for w in llm.windows}[Window.MINUTE] == 0
    assert {w.window: w.remaining for w in here.windows}[Window.MINUTE] == 20


async def test_the_unlimited_default_plan_answers_fifty_messages_in_a_minute(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    unlimited = QuotaService(db_sessions, clock=clock, default_plan="unlimited")
    for _ in range(50):
        await unlimited.consume(USER, Feature.LLM, guild_id=GUILD)
    assert (await unlimited.plan_for(GUILD)).max_input_chars is None
    free = QuotaService(db_sessions, clock=clock)
    with pytest.raises(QuotaExceeded):
        await use(free, Feature.LLM, 11)


async def test_a_grant_lifts_the_global_plan_until_it_expires(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    quotas = QuotaService(db_sessions, clock=clock)
    grants = PlanGrants(db_sessions, known_plans=list(quotas.plans), clock=clock)
    expires = parse_expiry("1h", grants.now())
    assert expires is not None and expires.timestamp() == clock.now + 3600
    await grants.grant("user", USER, "premium", expires_at=expires, actor_id=1)
    assert (await quotas.plan_for(None, user_id=USER)) is PREMIUM_PLAN
    await use(quotas, Feature.LLM, 30)  # premium: 30 a minute, in a DM too
    clock.advance(3599)
    assert (await quotas.plan_for(None, user_id=USER)) is PREMIUM_PLAN
    clock.advance(1)  # the grant ends exactly on time
    assert (await quotas.plan_for(None, user_id=USER)) is FREE_PLAN
    await use(quotas, Feature.LLM, 10)
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM)


async def test_a_server_grant_covers_its_members_there_and_revoking_ends_it(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    quotas = QuotaService(db_sessions, clock=clock)
    grants = PlanGrants(db_sessions, known_plans=list(quotas.plans), clock=clock)
    await grants.grant("server", GUILD, "unlimited", expires_at=None, actor_id=1)
    await use(quotas, Feature.LLM, 40, guild_id=GUILD)
    await use(quotas, Feature.LLM, 10)  # elsewhere (a DM) the default plan still counts
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM)
    assert await grants.revoke("server", GUILD, actor_id=1) == 1
    with pytest.raises(QuotaExceeded):
        await quotas.consume(USER, Feature.LLM, guild_id=GUILD)
    with pytest.raises(InvalidInput):
        await grants.grant("user", USER, "platinum", expires_at=None, actor_id=1)
    for bad in ("yesterday", "0d", "99999w"):
        with pytest.raises(InvalidInput):
            parse_expiry(bad, grants.now())


def test_a_plans_file_defines_plans_and_its_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text(
        '[plans.friends]\nbase = "premium"\nmax_input_chars = 8000\nllm = { minute = 60, day = "-" }\n'
    )
    friends = load_plans_file(path)["friends"]
    assert friends.caps(Feature.LLM) == {Window.MINUTE: 60, Window.HOUR: None, Window.DAY: None}
    assert friends.caps(Feature.CLOSED_LLM)[Window.DAY] == 300 and friends.max_input_chars == 8000
    settings = load_settings(None, quota_plans_file=str(path), quota_default_plan="friends")
    assert settings.custom_plans["friends"] == friends
    for body, key in [
        ("[plans.friends]\nllm = { minute = -1 }\n", "plans.friends.llm.minute"),
        ("[plans.friends]\nmusic = { day = 3 }\n", "plans.friends.music"),
        ("[plans.friends]\nllm = { week = 3 }\n", "plans.friends.llm.week"),
        ("[plans.free]\nllm = { day = 3 }\n", "plans.free"),
        ('[plans.x]\nbase = "gold"\n', "plans.x.base"),
        ("[plan.x]\n", "plan"),
        ("not toml = = \n", "not valid TOML"),
    ]:
        path.write_text(body)
        with pytest.raises(ConfigError, match=re.escape(key)) as raised:
            load_settings(None, quota_plans_file=str(path))
        assert "QUOTA_PLANS_FILE" in str(raised.value)
    with pytest.raises(ConfigError, match="QUOTA_DEFAULT_PLAN"):
        load_settings(None, quota_default_plan="gold")


# --- one statement for many calls (SQLite), and a denial charges nothing -----------------------------


def _tight_quotas(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> QuotaService:
    """LLM: 100 a minute but 1 a day, so the day denies while the minute window still has room."""
    tight = Plan("tight", {Feature.LLM: {Window.MINUTE: 100, Window.DAY: 1}}, None)
    return QuotaService(sessions, clock=clock, plans={"tight": tight}, default_plan="tight")


async def _usage(sessions: async_sessionmaker[AsyncSession], user: int) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(QuotaUsage.window, QuotaUsage.used).where(QuotaUsage.user_id == user)
        )
        return {window: used for window, used in rows}


async def _denied_call_charges_nothing(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> None:
    quotas = _tight_quotas(sessions, clock)
    await quotas.consume(USER, Feature.LLM)  # the day is used up; the minute has 99 left
    others = [USER + 1, USER + 2]
    caps = quotas.default_plan.caps(Feature.LLM)
    outcomes = await asyncio.gather(
        *(quotas.counter.take(user, Feature.LLM.value, caps) for user in [USER, *others])
    )
    assert isinstance(outcomes[0], Denial) and outcomes[0].window is Window.DAY
    assert all(isinstance(outcome, Grant) for outcome in outcomes[1:])
    assert await _usage(sessions, USER) == {"minute": 1, "day": 1}  # the denied call's minute given back
    for user in others:
        assert await _usage(sessions, user) == {"minute": 1, "day": 1}


async def test_calls_waiting_together_are_one_statement_and_a_denied_one_charges_nothing_sqlite(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    engine = db_sessions.kw["bind"].sync_engine
    inserts: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO QUOTA_USAGE"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        await _denied_call_charges_nothing(db_sessions, clock)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(inserts) == 2  # the first call alone, then the three waiting calls in one statement


async def test_a_long_batch_is_the_statement_sqlalchemy_would_compile_without_compiling_it(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    counter = QuotaService(db_sessions).counter
    for rows in (3, 4, 7, 38, 96):
        assert counter._take_sql(rows) == counter._compile_take(rows)


async def test_a_denied_call_charges_nothing_postgresql(pg_engine: AsyncEngine, clock: FakeClock) -> None:
    await _denied_call_charges_nothing(create_sessionmaker(pg_engine), clock)


async def test_a_call_cancelled_while_its_statement_runs_charges_nothing_sqlite(
    db_sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    quotas = QuotaService(db_sessions, clock=clock)
    counter = quotas.counter
    caps = FREE_PLAN.caps(Feature.LLM)
    waiting = asyncio.ensure_future(counter.take(USER, Feature.LLM.value, caps))
    await asyncio.sleep(0)  # queued; the statement is under way
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert counter._drainer is not None
    await counter._drainer
    await asyncio.gather(*counter._background)
    assert await _usage(db_sessions, USER) == {"minute": 0, "day": 0}
    assert isinstance(await counter.take(USER, Feature.LLM.value, caps), Grant)  # and the counter goes on
