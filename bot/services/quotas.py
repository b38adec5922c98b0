"""Per-user quotas: plans, atomic per-window counters in the database, reservations that refund on failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ConcordError, InvalidInput
from bot.store.engine import upsert_insert
from bot.store.models import GuildSettings, OperatorGrant, QuotaUsage

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


class WindowCounter:
    """Fixed-window counters in `quota_usage`, changed only by single atomic statements.

    Taking units is ONE statement for every capped window of every scope:
    `INSERT ... VALUES (each window) ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <= cap
    RETURNING ...`. A window at its cap returns no row; then the transaction rolls back, so no window
    is charged. It works the same on SQLite and PostgreSQL.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = time.time) -> None:
        self.sessions = sessions
        self.clock = clock
        bind = sessions.kw.get("bind")
        # SQLite has one writer at a time; queueing this process's writers here, instead of in SQLite's
        # busy handler (which sleeps and retries, unfairly), keeps every wait short under contention.
        self._sqlite_writes = asyncio.Lock() if bind is not None and bind.dialect.name == "sqlite" else None

    def _one_writer(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._sqlite_writes if self._sqlite_writes is not None else contextlib.nullcontext()

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
        async with self._one_writer(), self.sessions() as session:
            insert = upsert_insert(session)
            cap_of_row = case(
                *(
                    (and_(QuotaUsage.scope == scope, QuotaUsage.window == window.value), cap)
                    for scope, window, cap, _ in wanted
                ),
                else_=0,
            )
            statement = (
                insert(QuotaUsage)
                .values(
                    [
                        {
                            "user_id": subject_id,
                            "scope": scope,
                            "feature": feature,
                            "window": window.value,
                            "window_start": start,
                            "used": units,
                        }
                        for scope, window, _, start in wanted
                    ]
                )
                .on_conflict_do_update(
                    index_elements=["user_id", "scope", "feature", "window", "window_start"],
                    set_={"used": QuotaUsage.used + units},
                    where=QuotaUsage.used + units <= cap_of_row,
                )
                .returning(QuotaUsage.scope, QuotaUsage.window, QuotaUsage.used)
            )
            rows = {(scope, window): used for scope, window, used in await session.execute(statement)}
            for scope, window, cap, start in wanted:
                if (scope, window.value) not in rows:
                    await session.rollback()
                    return Denial(window, cap, start + WINDOW_SECONDS[window], scope)
            await session.commit()
        taken = tuple(
            TakenWindow(window, start, rows[(scope, window.value)], cap, scope)
            for scope, window, cap, start in wanted
        )
        return Grant(subject_id, feature, units, taken)

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
    ) -> None:
        self.sessions = sessions
        self.counter = WindowCounter(sessions, clock=clock)
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
        """Both plans for a call, read in one session: active grants, then the server's role plans."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        subjects = []
        if user_id is not None:
            subjects.append(and_(OperatorGrant.subject_type == "user", OperatorGrant.subject_id == user_id))
        if guild_id is not None:
            subjects.append(
                and_(OperatorGrant.subject_type == "server", OperatorGrant.subject_id == guild_id)
            )
        async with self.sessions() as session:
            granted: list[str] = []
            if subjects:
                granted = list(
                    await session.scalars(
                        select(OperatorGrant.plan).where(
                            or_(*subjects),
                            OperatorGrant.revoked_at.is_(None),
                            or_(OperatorGrant.expires_at.is_(None), OperatorGrant.expires_at > now),
                        )
                    )
                )
            settings = await session.get(GuildSettings, guild_id) if guild_id is not None else None
        global_plan = (
            combine_plans([self.operator_plan(n) for n in granted]) if granted else self.default_plan
        )
        server_plan = (
            resolve_plan(guild_id, role_ids, settings.role_plans or {}, settings.quota_bypass_role_id)
            if settings is not None
            else None
        )
        return PlanContext(global_plan, server_plan, guild_id)

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
