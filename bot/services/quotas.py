"""Per-user quotas: plans, atomic per-window counters in the database, reservations that refund on failure."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, and_, bindparam, case, delete, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.errors import ConcordError, InvalidInput
from bot.services.config_cache import ConfigCache
from bot.store.engine import dialect_insert
from bot.store.group_commit import GroupCommit
from bot.store.models import OperatorGrant, QuotaUsage

if TYPE_CHECKING:
    from bot.services.guild_config import GuildConfigService

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Feature(StrEnum):
    """What a capability call is counted as. Flux and DALL-E style generations both count as IMAGE."""

    LLM = "llm"
    CLOSED_LLM = "closed_llm"
    IMAGE = "image"
    IMAGINE = "imagine"
    VISION = "vision"
    ASK = "ask"
    SONGS = "songs"
    TTS = "tts"


FEATURE_LABELS: dict[Feature, str] = {
    Feature.LLM: "LLM chat",
    Feature.CLOSED_LLM: "Closed-source LLM chat",
    Feature.IMAGE: "Image generation",
    Feature.IMAGINE: "Imagine",
    Feature.VISION: "Vision",
    Feature.ASK: "Web search (ask)",
    Feature.SONGS: "Songs",
    Feature.TTS: "Text to speech",
}


class Window(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


WINDOW_SECONDS: dict[Window, int] = {Window.MINUTE: 60, Window.HOUR: 3600, Window.DAY: 86400}

# A cap per window; None means that window has no limit (the seed's "-").
Limits = Mapping[Window, int | None]


def _limits(minute: int | None, hour: int | None, day: int | None) -> dict[Window, int | None]:
    return {Window.MINUTE: minute, Window.HOUR: hour, Window.DAY: day}


@dataclass(frozen=True)
class Plan:
    """Caps per feature and window, plus the longest message a user may send."""

    name: str
    limits: Mapping[Feature, Limits]
    max_input_chars: int | None

    def caps(self, feature: Feature) -> Limits:
        return self.limits.get(feature, _limits(None, None, None))


# The seed's (004) free and premium plans. Songs and TTS are not in the seed; their numbers are ours:
# a song is an expensive multi-minute job, speech is cheap but easy to spam.
FREE_PLAN = Plan(
    name="free",
    limits={
        Feature.LLM: _limits(10, None, 2000),
        Feature.CLOSED_LLM: _limits(None, 25, 100),
        Feature.IMAGE: _limits(120, None, 750),
        Feature.ASK: _limits(120, None, 750),
        Feature.IMAGINE: _limits(None, None, 20),
        Feature.VISION: _limits(None, 25, 100),
        Feature.SONGS: _limits(None, 5, 10),
        Feature.TTS: _limits(10, None, 200),
    },
    max_input_chars=1000,
)
PREMIUM_PLAN = Plan(
    name="premium",
    limits={
        Feature.LLM: _limits(30, None, 5000),
        Feature.CLOSED_LLM: _limits(None, 50, 300),
        Feature.IMAGE: _limits(120, None, 750),
        Feature.ASK: _limits(120, None, 750),
        Feature.IMAGINE: _limits(None, None, 20),
        Feature.VISION: _limits(None, 25, 100),
        Feature.SONGS: _limits(None, 10, 30),
        Feature.TTS: _limits(30, None, 1000),
    },
    max_input_chars=5000,
)
UNLIMITED_PLAN = Plan(name="unlimited", limits={}, max_input_chars=None)
# The operator's built-in plans (QUOTA_DEFAULT_PLAN, /owner grant); a plans file may add more.
BUILTIN_PLANS: dict[str, Plan] = {"free": FREE_PLAN, "premium": PREMIUM_PLAN, "unlimited": UNLIMITED_PLAN}
# The named plans a server's admins may give a role as the server's own caps.
SERVER_PLANS: dict[str, Plan] = {"free": FREE_PLAN, "premium": PREMIUM_PLAN}
GLOBAL_SCOPE = 0
"""The scope of a user's global allowance; a server's own caps are counted under its guild id."""


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they are stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def discord_relative(timestamp: float) -> str:
    return f"<t:{math.ceil(timestamp)}:R>"


class QuotaExceeded(ConcordError):
    """A user's allowance for one feature is used up in one window; says which (the user's own or this
    server's) and when it resets."""

    def __init__(
        self,
        feature: Feature,
        window: Window | None,
        cap: int,
        resets_at: float | None,
        *,
        by_server: bool = False,
    ) -> None:
        label = FEATURE_LABELS[feature]
        whose = "this server's" if by_server else "your"
        if window is None or resets_at is None:
            message = (
                f"This server doesn't include {label.lower()} in its limits."
                if by_server
                else f"Your plan doesn't include {label.lower()}."
            )
        else:
            message = (
                f"You've used {whose} {label.lower()} allowance for this {window.value} ({cap}/{cap}); "
                f"it resets {discord_relative(resets_at)}."
            )
        super().__init__(message)
        self.feature = feature
        self.window = window
        self.cap = cap
        self.resets_at = resets_at
        self.by_server = by_server


# --- plan resolution ------------------------------------------------------------------------------


def parse_custom_limits(text: str) -> dict[str, dict[str, int | None]]:
    """Parse `llm.minute=5 llm.day=100 vision.hour=-` ("-" = no limit) into stored JSON form."""
    result: dict[str, dict[str, int | None]] = {}
    for token in text.replace(",", " ").replace(";", " ").split():
        key, sep, raw = token.partition("=")
        feature_name, dot, window_name = key.partition(".")
        if not sep or not dot:
            raise InvalidInput(f"`{token}` isn't of the form feature.window=number (e.g. llm.day=100).")
        try:
            feature = Feature(feature_name.strip().lower())
            window = Window(window_name.strip().lower())
        except ValueError:
            raise InvalidInput(
                f"`{key}`: features are {', '.join(f.value for f in Feature)}; windows are minute, hour, day."
            ) from None
        raw = raw.strip()
        if raw == "-":
            cap: int | None = None
        elif raw.isascii() and raw.isdigit() and len(raw) <= 8 and int(raw) <= 10_000_000:
            cap = int(raw)
        else:
            raise InvalidInput(f"`{token}`: the limit must be a whole number from 0 to 10000000, or `-`.")
        result.setdefault(feature.value, {})[window.value] = cap
    if not result:
        raise InvalidInput("Give at least one limit, e.g. `llm.minute=5 llm.day=100`.")
    return result


def plan_from_stored(value: Any) -> Plan | None:
    """A role_plans value: a server plan name, or custom numbers. Custom numbers cap only the features
    and windows they name: a server's plan can only tighten the user's own allowance."""
    if isinstance(value, str):
        return SERVER_PLANS.get(value)
    if not isinstance(value, Mapping):
        return None
    limits: dict[Feature, dict[Window, int | None]] = {}
    for feature_name, windows in value.items():
        if feature_name not in Feature.__members__.values() or not isinstance(windows, Mapping):
            continue
        for window_name, cap in windows.items():
            if window_name in Window.__members__.values() and (cap is None or isinstance(cap, int)):
                limits.setdefault(Feature(feature_name), _limits(None, None, None))[Window(window_name)] = cap
    return Plan(name="custom", limits=limits, max_input_chars=None)


def _more_generous(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def _tighter(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def combine_plans(plans: Sequence[Plan]) -> Plan:
    """A member with several plans (roles, or a user and a server grant) gets, per feature and window,
    the most generous cap."""
    if len(plans) == 1:
        return plans[0]
    limits: dict[Feature, dict[Window, int | None]] = {}
    for feature in Feature:
        limits[feature] = {}
        for window in Window:
            caps = [plan.caps(feature).get(window) for plan in plans]
            merged = caps[0]
            for cap in caps[1:]:
                merged = _more_generous(merged, cap)
            limits[feature][window] = merged
    chars = [p.max_input_chars for p in plans]
    max_chars = None if any(c is None for c in chars) else max(c for c in chars if c is not None)
    return Plan(name=" + ".join(sorted({p.name for p in plans})), limits=limits, max_input_chars=max_chars)


def resolve_plan(
    guild_id: int | None,
    role_ids: Iterable[int],
    role_plans: Mapping[str, Any],
    bypass_role_id: int | None,
) -> Plan | None:
    """The server's own caps for a member, or None when the server sets none (or the member has its
    bypass role, which skips the server's caps only): their roles' plans, else the @everyone role's
    (whose id is the guild's). DMs have no server caps."""
    if guild_id is None:
        return None
    roles = set(role_ids)
    if bypass_role_id is not None and bypass_role_id in roles:
        return None
    role_specific = [plan_from_stored(role_plans[str(r)]) for r in roles if str(r) in role_plans]
    chosen = [p for p in role_specific if p is not None]
    if not chosen and str(guild_id) in role_plans:
        base = plan_from_stored(role_plans[str(guild_id)])
        chosen = [base] if base is not None else []
    return combine_plans(chosen) if chosen else None


@dataclass(frozen=True)
class PlanContext:
    """Both plans that apply to one call: the operator's global plan and the server's own caps."""

    global_plan: Plan
    server_plan: Plan | None = None
    guild_id: int | None = None

    @property
    def effective(self) -> Plan:
        """The global plan, its longest message shortened to the server plan's where that is tighter."""
        if self.server_plan is None:
            return self.global_plan
        chars = _tighter(self.global_plan.max_input_chars, self.server_plan.max_input_chars)
        if chars == self.global_plan.max_input_chars:
            return self.global_plan
        return Plan(self.global_plan.name, self.global_plan.limits, chars)

    def claims(self, feature: Feature) -> list[tuple[int, Limits]]:
        """(scope, caps) to take from: the global allowance, and the server's when it sets caps."""
        claims: list[tuple[int, Limits]] = [(GLOBAL_SCOPE, self.global_plan.caps(feature))]
        if self.server_plan is not None and self.guild_id is not None:
            claims.append((self.guild_id, self.server_plan.caps(feature)))
        return claims


# --- the counters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakenWindow:
    window: Window
    window_start: int
    used: int
    cap: int
    scope: int = GLOBAL_SCOPE


@dataclass(frozen=True)
class Grant:
    """Units taken from every capped window of one feature; what a refund gives back."""

    subject_id: int
    feature: str
    units: int
    taken: tuple[TakenWindow, ...]


@dataclass(frozen=True)
class Denial:
    window: Window
    cap: int
    resets_at: float
    scope: int = GLOBAL_SCOPE


def window_start(window: Window, now: float) -> int:
    length = WINDOW_SECONDS[window]
    return int(now // length) * length


@dataclass
class _Take:
    """One call's request for units: its capped windows as (scope, window, cap, window start)."""

    subject_id: int
    feature: str
    units: int
    wanted: list[tuple[int, Window, int, int]]
    future: asyncio.Future[Grant | Denial] | None = None
    abandoned: bool = False
    """Its caller was cancelled while it waited: a grant made for it is given back."""


MAX_BATCH = 32
"""The most takes one SQLite statement carries (each of a distinct user and feature)."""


class WindowCounter:
    """Fixed-window counters in `quota_usage`, changed only by single atomic statements.

    Taking units is ONE statement for every capped window: `INSERT ... VALUES (each window) ON CONFLICT DO
    UPDATE SET used = used + n WHERE used + n <= cap RETURNING ...`. A window at its cap returns no row; the
    windows of that call which were charged are given back in the same transaction, before its commit, so
    no other connection ever sees a partial charge. It works the same on SQLite and PostgreSQL.

    On SQLite, which has one writer at a time anyway, the calls waiting while a statement runs are taken
    together: one statement and one commit for up to MAX_BATCH calls of distinct (user, feature), each still
    granted or denied on its own rows. On PostgreSQL each call is its own transaction (row locks, in one
    order: scope, then minute, hour, day, so no deadlocks).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = time.time,
        group: GroupCommit | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        bind = sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise TypeError("the quota counters need a session factory bound to an AsyncEngine")
        self.engine = bind
        self.group = group if group is not None else GroupCommit(bind)
        """On SQLite, batches commit with the other short writes of the same moment (a turn's question)."""
        """Counters are taken on a bare connection with precompiled SQL: no ORM session, no recompiling."""
        self._sql: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._batched = bind.dialect.name == "sqlite"
        self._queue: list[_Take] = []
        self._drainer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _take_sql(self, rows: int) -> tuple[str, tuple[str, ...]]:
        """The upsert of `rows` window rows as the database's SQL and its parameters' order, made once per
        row count. Row i's parameters: `u{i}` user, `s{i}` scope, `f{i}` feature, `w{i}` window, `t{i}`
        window start, `n{i}` units, `c{i}` cap.

        SQLAlchemy compiles the statements of one and two rows (it does not cache an upsert's compilation,
        and compiling costs milliseconds a row: 20 ms at 38 rows, in the path of every question waiting
        for a batch); a longer one repeats the two-row statement's second VALUES tuple and CASE branch,
        which is checked to rebuild the two-row statement exactly (else it is compiled too)."""
        found = self._sql.get(rows)
        if found is None:
            if len(self._sql) > 4 * MAX_BATCH:
                self._sql.clear()
            found = self._sql[rows] = (self._repeated(rows) if rows > 2 else None) or self._compile_take(rows)
        return found

    def _repeated(self, rows: int) -> tuple[str, tuple[str, ...]] | None:
        """The `rows`-row upsert from the one-row statement's VALUES tuple and CASE branch, repeated."""
        one, _ = self._take_sql(1)
        two, two_order = self._take_sql(2)
        values_at = one.find("VALUES (")
        values_end = one.find(")", values_at) + 1
        branch_at = one.find("CASE WHEN ")
        branch_end = one.find(" ELSE ", branch_at)
        if min(values_at, branch_at, branch_end) < 0:
            return None
        values = one[values_at + len("VALUES ") : values_end]
        branch = one[branch_at + len("CASE ") : branch_end]

        def build(n: int) -> tuple[str, tuple[str, ...]]:
            sql = (
                one[: values_at + len("VALUES ")]
                + ", ".join([values] * n)
                + one[values_end : branch_at + len("CASE ")]
                + " ".join([branch] * n)
                + one[branch_end:]
            )
            order = tuple(f"{k}{i}" for i in range(n) for k in "usfwtn")
            return sql, order + tuple(f"{k}{i}" for i in range(n) for k in "usfwc")

        if build(2) != (two, two_order):  # not the shape this expects: let SQLAlchemy compile it
            return None
        return build(rows)

    def _compile_take(self, rows: int) -> tuple[str, tuple[str, ...]]:
        insert = dialect_insert(self.engine.dialect.name)
        statement = insert(QuotaUsage).values(
            [
                {
                    "user_id": bindparam(f"u{i}"),
                    "scope": bindparam(f"s{i}"),
                    "feature": bindparam(f"f{i}"),
                    "window": bindparam(f"w{i}"),
                    "window_start": bindparam(f"t{i}"),
                    "used": bindparam(f"n{i}", type_=Integer),
                }
                for i in range(rows)
            ]
        )
        cap_of_row = case(
            *(
                (
                    and_(
                        QuotaUsage.user_id == bindparam(f"u{i}"),
                        QuotaUsage.scope == bindparam(f"s{i}"),
                        QuotaUsage.feature == bindparam(f"f{i}"),
                        QuotaUsage.window == bindparam(f"w{i}"),
                    ),
                    bindparam(f"c{i}", type_=Integer),
                )
                for i in range(rows)
            ),
            else_=literal_column("0"),
        )
        upsert = statement.on_conflict_do_update(
            index_elements=["user_id", "scope", "feature", "window", "window_start"],
            set_={"used": QuotaUsage.used + statement.excluded.used},
            where=QuotaUsage.used + statement.excluded.used <= cap_of_row,
        ).returning(
            QuotaUsage.user_id, QuotaUsage.scope, QuotaUsage.feature, QuotaUsage.window, QuotaUsage.used
        )
        compiled = upsert.compile(dialect=self.engine.dialect)
        order = tuple(compiled.positiontup or ())
        if not order:  # a named paramstyle: neither SQLite's nor asyncpg's
            raise RuntimeError(f"unexpected paramstyle {self.engine.dialect.paramstyle!r}")
        return str(compiled), order

    async def take(
        self, subject_id: int, feature: str, caps: Limits, units: int = 1, *, scope: int = GLOBAL_SCOPE
    ) -> Grant | Denial:
        return await self.take_all(subject_id, feature, [(scope, caps)], units)

    async def take_all(
        self, subject_id: int, feature: str, claims: Sequence[tuple[int, Limits]], units: int = 1
    ) -> Grant | Denial:
        """Take `units` from every capped window of every (scope, caps) claim, or from none."""
        now = self.clock()
        # Always scope, then minute, hour, day: one lock order on PostgreSQL, no deadlocks.
        wanted: list[tuple[int, Window, int, int]] = []
        for scope, caps in sorted(claims, key=lambda claim: claim[0]):
            for window in Window:
                cap = caps.get(window)
                if cap is None:
                    continue
                start = window_start(window, now)
                if units > cap:
                    # Also covers cap 0 (feature switched off), without touching the database.
                    return Denial(window, cap, start + WINDOW_SECONDS[window], scope)
                wanted.append((scope, window, cap, start))
        if not wanted:
            return Grant(subject_id, feature, units, ())
        take = _Take(subject_id, feature, units, wanted)
        if not self._batched:
            async with self.engine.connect() as connection:
                [outcome] = await self._run(connection, [take])
                await connection.commit()
            return outcome
        take.future = future = asyncio.get_running_loop().create_future()
        self._queue.append(take)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller is gone: units granted for it are given back (now, or by the drainer when its
            # statement ends), so a cancelled call charges nothing.
            take.abandoned = True
            if future.done() and not future.cancelled() and future.exception() is None:
                outcome = future.result()
                if isinstance(outcome, Grant):
                    self._spawn(self.give_back(outcome))
            raise

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        """Run the queued takes, a batch of distinct (user, feature) at a time, until none is left."""
        while self._queue:
            batch: list[_Take] = []
            later: list[_Take] = []
            seen: set[tuple[int, str]] = set()
            for take in self._queue:
                key = (take.subject_id, take.feature)
                if key in seen or len(batch) == MAX_BATCH:
                    later.append(take)  # the same user's next call waits for this one's answer
                else:
                    seen.add(key)
                    batch.append(take)
            self._queue = later
            try:
                outcomes = await self.group.submit(functools.partial(self._run, takes=batch))
            except BaseException as exc:
                failed = batch if isinstance(exc, Exception) else [*batch, *self._queue]
                for take in failed:
                    if take.future is not None and not take.future.done():
                        take.future.set_exception(
                            exc if isinstance(exc, Exception) else RuntimeError("stopped")
                        )
                if not isinstance(exc, Exception):
                    self._queue = []
                    raise
                continue
            for take, outcome in zip(batch, outcomes, strict=True):
                if take.abandoned and isinstance(outcome, Grant):
                    self._spawn(self.give_back(outcome))
                elif take.future is not None and not take.future.done():
                    take.future.set_result(outcome)

    async def _run(self, connection: AsyncConnection, takes: Sequence[_Take]) -> list[Grant | Denial]:
        """One statement for every window of `takes`; a denied take's charged windows are given back in
        the same transaction (the caller commits)."""
        params: dict[str, Any] = {}
        i = 0
        for take in takes:
            for scope, window, cap, start in take.wanted:
                params.update(
                    {
                        f"u{i}": take.subject_id,
                        f"s{i}": scope,
                        f"f{i}": take.feature,
                        f"w{i}": window.value,
                        f"t{i}": start,
                        f"n{i}": take.units,
                        f"c{i}": cap,
                    }
                )
                i += 1
        sql, order = self._take_sql(i)
        result = await connection.exec_driver_sql(sql, tuple(params[name] for name in order))
        rows: Sequence[Any] = result.all()
        used: dict[tuple[int, int, str, str], int] = {(r[0], r[1], r[2], r[3]): r[4] for r in rows}
        outcomes: list[Grant | Denial] = []
        for take in takes:
            got = [
                used.get((take.subject_id, scope, take.feature, w.value)) for scope, w, _, _ in take.wanted
            ]
            denied = next(
                (claim for claim, count in zip(take.wanted, got, strict=True) if count is None), None
            )
            if denied is None:
                taken = tuple(
                    TakenWindow(window, start, count or 0, cap, scope)
                    for (scope, window, cap, start), count in zip(take.wanted, got, strict=True)
                )
                outcomes.append(Grant(take.subject_id, take.feature, take.units, taken))
                continue
            scope, window, cap, start = denied
            outcomes.append(Denial(window, cap, start + WINDOW_SECONDS[window], scope))
            for (c_scope, c_window, _, c_start), count in zip(take.wanted, got, strict=True):
                if count is not None:  # charged before the denial was known: give it back
                    await connection.execute(
                        update(QuotaUsage)
                        .where(
                            QuotaUsage.user_id == take.subject_id,
                            QuotaUsage.scope == c_scope,
                            QuotaUsage.feature == take.feature,
                            QuotaUsage.window == c_window.value,
                            QuotaUsage.window_start == c_start,
                        )
                        .values(used=QuotaUsage.used - take.units)
                    )
        return outcomes

    async def give_back(self, grant: Grant) -> None:
        """Return a grant's units to the windows they were taken from (a no-op once a window has passed)."""
        if not grant.taken:
            return
        async with self.sessions() as session:
            for taken in grant.taken:
                await session.execute(
                    update(QuotaUsage)
                    .where(
                        QuotaUsage.user_id == grant.subject_id,
                        QuotaUsage.scope == taken.scope,
                        QuotaUsage.feature == grant.feature,
                        QuotaUsage.window == taken.window.value,
                        QuotaUsage.window_start == taken.window_start,
                        QuotaUsage.used >= grant.units,
                    )
                    .values(used=QuotaUsage.used - grant.units)
                )
            await session.commit()

    async def used(
        self, subject_id: int, features: Iterable[str], *, scope: int = GLOBAL_SCOPE
    ) -> dict[tuple[str, Window], int]:
        """Units used in each current window of one scope, for reports."""
        now = self.clock()
        starts = {w: window_start(w, now) for w in Window}
        async with self.sessions() as session:
            rows = await session.execute(
                select(QuotaUsage.feature, QuotaUsage.window, QuotaUsage.window_start, QuotaUsage.used).where(
                    QuotaUsage.user_id == subject_id,
                    QuotaUsage.scope == scope,
                    QuotaUsage.feature.in_(list(features)),
                )
            )
            result: dict[tuple[str, Window], int] = {}
            for feature, window_name, start, used in rows:
                window = Window(window_name)
                if starts[window] == start:
                    result[(feature, window)] = used
            return result

    async def clear(self, subject_id: int, feature: str | None = None, *, scope: int = GLOBAL_SCOPE) -> int:
        """Delete one scope's counters of a user (a server's reset never touches the global ones)."""
        async with self.sessions() as session:
            statement = delete(QuotaUsage).where(QuotaUsage.user_id == subject_id, QuotaUsage.scope == scope)
            if feature is not None:
                statement = statement.where(QuotaUsage.feature == feature)
            result = await session.execute(statement)
            await session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    async def prune(self) -> int:
        """Delete rows of windows that have ended (keeps the table small; safe at any time)."""
        now = self.clock()
        async with self.sessions() as session:
            removed = 0
            for window in Window:
                result = await session.execute(
                    delete(QuotaUsage).where(
                        QuotaUsage.window == window.value, QuotaUsage.window_start < window_start(window, now)
                    )
                )
                removed += int(getattr(result, "rowcount", 0) or 0)
            await session.commit()
            return removed


# --- the service the cogs use ---------------------------------------------------------------------


@dataclass(frozen=True)
class WindowReport:
    window: Window
    cap: int | None  # None: no limit in this window
    used: int
    resets_at: float

    @property
    def remaining(self) -> int | None:
        return None if self.cap is None else max(self.cap - self.used, 0)


@dataclass(frozen=True)
class FeatureReport:
    feature: Feature
    windows: tuple[WindowReport, ...]


@dataclass(frozen=True)
class UsageReport:
    """The global allowance (`plan`, `features`) and, in a server with its own caps, the use there."""

    plan: Plan
    features: tuple[FeatureReport, ...]
    server_plan: Plan | None = None
    server_features: tuple[FeatureReport, ...] = ()


@dataclass
class Reservation:
    """Quota taken for one capability call. Leaving the `async with` block with an exception refunds it
    (the provider failed, or the user got nothing); call `keep()` first to charge anyway."""

    service: QuotaService
    user_id: int
    feature: Feature
    guild_id: int | None = None
    role_ids: Sequence[int] = ()
    units: int = 1
    grant: Grant | None = None
    plan: Plan | None = None
    _kept: bool = field(default=False, repr=False)
    _refunded: bool = field(default=False, repr=False)

    async def __aenter__(self) -> Reservation:
        self.grant, self.plan = await self.service.consume(
            self.user_id, self.feature, guild_id=self.guild_id, role_ids=self.role_ids, units=self.units
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not self._kept:
            try:
                await self.refund()
            except Exception:
                log.exception("Could not refund %s quota for user %s", self.feature, self.user_id)

    def keep(self) -> None:
        """Charge the quota even if the block fails after this point (the provider already did the work)."""
        self._kept = True

    async def refund(self) -> None:
        if self.grant is not None and not self._refunded:
            self._refunded = True
            await self.service.refund(self.grant)


class QuotaService:
    """Per-user allowances. Two scopes are checked on every call:

    - the user's global allowance, shared by every server, DM and user install: the operator's plan
      (QUOTA_DEFAULT_PLAN, or a plan the owners granted the user or the server with `/owner grant`);
    - in a server that sets its own caps (role plans), that server's caps, counted per (server, user).

    Capability cogs wrap every provider call:

        async with quotas.reserve(user.id, Feature.VISION, guild_id=itx.guild_id, role_ids=role_ids):
            result = await bot.providers.vision(...)

    Denial raises `QuotaExceeded` before the provider is called; an exception inside the block refunds.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = time.time,
        default_plan: str = "free",
        plans: Mapping[str, Plan] | None = None,
        cache: ConfigCache | None = None,
        guild_config: GuildConfigService | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self.sessions = sessions
        self.counter = WindowCounter(sessions, clock=clock, group=group)
        self.cache = cache if cache is not None else ConfigCache()
        if guild_config is None:
            from bot.services.guild_config import GuildConfigService  # it imports this module's plans

            guild_config = GuildConfigService(sessions, cache=self.cache)
        self.guild_config = guild_config
        """Where a server's role plans and bypass role are read (its cached snapshot)."""
        self.plans: dict[str, Plan] = {**BUILTIN_PLANS, **(plans or {})}
        if default_plan not in self.plans:
            raise ValueError(f"unknown default plan {default_plan!r}")
        self.default_plan = self.plans[default_plan]

    @property
    def clock(self) -> Clock:
        return self.counter.clock

    def operator_plan(self, name: str) -> Plan:
        """A plan the owners may grant; a name no longer defined (plans file edited) means the default."""
        return self.plans.get(name, self.default_plan)

    async def context(
        self, user_id: int | None, guild_id: int | None, role_ids: Iterable[int] = ()
    ) -> PlanContext:
        """Both plans for a call: the active operator grants and the server's role plans, each kept for a
        few seconds (see ConfigCache), so a turn usually reads neither."""
        grants = await self.cache.get("grants", self._read_grants)
        granted = grants.get(("user", user_id), ()) + grants.get(("server", guild_id), ())
        now = datetime.fromtimestamp(self.clock(), UTC)
        plans = [plan for plan, expires_at in granted if expires_at is None or _aware(expires_at) > now]
        global_plan = combine_plans([self.operator_plan(n) for n in plans]) if plans else self.default_plan
        server_plan = None
        if guild_id is not None:
            config = await self.guild_config.get(guild_id)
            server_plan = resolve_plan(guild_id, role_ids, config.role_plans, config.quota_bypass_role_id)
        return PlanContext(global_plan, server_plan, guild_id)

    async def _read_grants(self) -> dict[tuple[str, int | None], tuple[tuple[str, datetime | None], ...]]:
        """Every unrevoked grant, by subject ("user" or "server", id), with its end (judged when used).
        Grants are few (an operator gives them by hand), so one read serves every caller for the cache's
        few seconds, where a read per caller made a burst of twenty new callers wait on twenty reads."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(
                    OperatorGrant.subject_type,
                    OperatorGrant.subject_id,
                    OperatorGrant.plan,
                    OperatorGrant.expires_at,
                ).where(OperatorGrant.revoked_at.is_(None))
            )
            by_subject: dict[tuple[str, int | None], list[tuple[str, datetime | None]]] = {}
            for kind, subject_id, plan, expires_at in rows:
                by_subject.setdefault((kind, subject_id), []).append((plan, expires_at))
        return {subject: tuple(found) for subject, found in by_subject.items()}

    async def plan_for(
        self, guild_id: int | None, role_ids: Iterable[int] = (), *, user_id: int | None = None
    ) -> Plan:
        """The plan a call is measured by (its longest message tightened by the server's caps)."""
        return (await self.context(user_id, guild_id, role_ids)).effective

    async def consume(
        self,
        user_id: int,
        feature: Feature,
        *,
        guild_id: int | None = None,
        role_ids: Iterable[int] = (),
        units: int = 1,
    ) -> tuple[Grant, Plan]:
        """Take `units` from every capped window of `feature`, global and server, or raise QuotaExceeded
        naming the window (and whether the server's own cap denied)."""
        context = await self.context(user_id, guild_id, role_ids)
        result = await self.counter.take_all(user_id, feature.value, context.claims(feature), units)
        if isinstance(result, Denial):
            raise QuotaExceeded(
                feature,
                result.window if result.cap > 0 else None,
                result.cap,
                result.resets_at,
                by_server=result.scope != GLOBAL_SCOPE,
            )
        return result, context.effective

    async def refund(self, grant: Grant) -> None:
        await self.counter.give_back(grant)

    def reserve(
        self,
        user_id: int,
        feature: Feature,
        *,
        guild_id: int | None = None,
        role_ids: Sequence[int] = (),
        units: int = 1,
    ) -> Reservation:
        return Reservation(self, user_id, feature, guild_id=guild_id, role_ids=tuple(role_ids), units=units)

    async def reset(self, user_id: int, feature: Feature | None = None, *, scope: int = GLOBAL_SCOPE) -> int:
        """Clear one scope's counters: a server's (its admins) or the global ones (owners only)."""
        return await self.counter.clear(user_id, feature.value if feature else None, scope=scope)

    async def _features(self, user_id: int, plan: Plan, scope: int) -> tuple[FeatureReport, ...]:
        used = await self.counter.used(user_id, [f.value for f in Feature], scope=scope)
        now = self.clock()
        features = []
        for feature in Feature:
            caps = plan.caps(feature)
            windows = tuple(
                WindowReport(
                    window=w,
                    cap=caps.get(w),
                    used=used.get((feature.value, w), 0),
                    resets_at=window_start(w, now) + WINDOW_SECONDS[w],
                )
                for w in Window
            )
            features.append(FeatureReport(feature, windows))
        return tuple(features)

    async def report(
        self, user_id: int, *, guild_id: int | None = None, role_ids: Iterable[int] = ()
    ) -> UsageReport:
        """The user's global allowance and, in a server with its own caps, their use in that server only."""
        context = await self.context(user_id, guild_id, role_ids)
        global_features = await self._features(user_id, context.global_plan, GLOBAL_SCOPE)
        if context.server_plan is None or guild_id is None:
            return UsageReport(context.global_plan, global_features)
        server_features = await self._features(user_id, context.server_plan, guild_id)
        return UsageReport(context.global_plan, global_features, context.server_plan, server_features)
