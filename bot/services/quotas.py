"""Per-user quotas: plans, atomic per-window counters in the database, reservations that refund on failure."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ConcordError, InvalidInput
from bot.providers.models import is_closed_source
from bot.store.engine import upsert_insert
from bot.store.models import GuildSettings, QuotaUsage

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
PLANS: dict[str, Plan] = {"free": FREE_PLAN, "premium": PREMIUM_PLAN}
UNLIMITED_PLAN = Plan(name="unlimited (bypass role)", limits={}, max_input_chars=None)


def chat_feature_for(model: str) -> Feature:
    """LLM or CLOSED_LLM for a chat model id (closed-source models have the seed's stricter plan)."""
    return Feature.CLOSED_LLM if is_closed_source(model) else Feature.LLM


def discord_relative(timestamp: float) -> str:
    return f"<t:{math.ceil(timestamp)}:R>"


class QuotaExceeded(ConcordError):
    """A user's allowance for one feature is used up in one window; says which and when it resets."""

    def __init__(self, feature: Feature, window: Window | None, cap: int, resets_at: float | None) -> None:
        label = FEATURE_LABELS[feature]
        if window is None or resets_at is None:
            message = f"Your plan here doesn't include {label.lower()}."
        else:
            message = (
                f"You've used your {label.lower()} allowance for this {window.value} ({cap}/{cap}); "
                f"it resets {discord_relative(resets_at)}."
            )
        super().__init__(message)
        self.feature = feature
        self.window = window
        self.cap = cap
        self.resets_at = resets_at


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
        elif raw.isdigit() and int(raw) <= 10_000_000:
            cap = int(raw)
        else:
            raise InvalidInput(f"`{token}`: the limit must be a whole number from 0 to 10000000, or `-`.")
        result.setdefault(feature.value, {})[window.value] = cap
    if not result:
        raise InvalidInput("Give at least one limit, e.g. `llm.minute=5 llm.day=100`.")
    return result


def plan_from_stored(value: Any) -> Plan | None:
    """A role_plans value: a plan name, or custom numbers layered over the free plan."""
    if isinstance(value, str):
        return PLANS.get(value)
    if not isinstance(value, Mapping):
        return None
    limits: dict[Feature, dict[Window, int | None]] = {f: dict(c) for f, c in FREE_PLAN.limits.items()}
    for feature_name, windows in value.items():
        if feature_name not in Feature.__members__.values() or not isinstance(windows, Mapping):
            continue
        for window_name, cap in windows.items():
            if window_name in Window.__members__.values() and (cap is None or isinstance(cap, int)):
                limits[Feature(feature_name)][Window(window_name)] = cap
    return Plan(name="custom", limits=limits, max_input_chars=FREE_PLAN.max_input_chars)


def _more_generous(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def combine_plans(plans: Sequence[Plan]) -> Plan:
    """A member with several plan roles gets, per feature and window, the most generous cap."""
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
) -> Plan:
    """The plan that applies to a member: bypass role, else their roles' plans (the @everyone role, whose
    id is the guild's, sets the guild default), else the free plan. DMs always use the free plan."""
    if guild_id is None:
        return FREE_PLAN
    roles = set(role_ids)
    if bypass_role_id is not None and bypass_role_id in roles:
        return UNLIMITED_PLAN
    role_specific = [plan_from_stored(role_plans[str(r)]) for r in roles if str(r) in role_plans]
    chosen = [p for p in role_specific if p is not None]
    if not chosen and str(guild_id) in role_plans:
        base = plan_from_stored(role_plans[str(guild_id)])
        chosen = [base] if base is not None else []
    return combine_plans(chosen) if chosen else FREE_PLAN


# --- the counters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakenWindow:
    window: Window
    window_start: int
    used: int
    cap: int


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


def window_start(window: Window, now: float) -> int:
    length = WINDOW_SECONDS[window]
    return int(now // length) * length


class WindowCounter:
    """Fixed-window counters in `quota_usage`, changed only by single atomic statements.

    Taking units is one `INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <= cap
    RETURNING used` per window, all windows in one transaction: if a later window denies, the transaction
    rolls back and the windows already taken are released. It works the same on SQLite and PostgreSQL.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = time.time) -> None:
        self.sessions = sessions
        self.clock = clock

    async def take(self, subject_id: int, feature: str, caps: Limits, units: int = 1) -> Grant | Denial:
        now = self.clock()
        capped = [(w, caps[w]) for w in Window if caps.get(w) is not None]
        for window, cap in capped:
            assert cap is not None
            if units > cap:
                # Also covers cap 0 (feature switched off), without touching the database.
                return Denial(window, cap, window_start(window, now) + WINDOW_SECONDS[window])
        taken: list[TakenWindow] = []
        async with self.sessions() as session:
            insert = upsert_insert(session)
            for window, cap in capped:  # always minute, hour, day: one lock order, no deadlocks
                assert cap is not None
                start = window_start(window, now)
                statement = (
                    insert(QuotaUsage)
                    .values(user_id=subject_id, feature=feature, window=window.value)
                    .values(window_start=start, used=units)
                    .on_conflict_do_update(
                        index_elements=["user_id", "feature", "window", "window_start"],
                        set_={"used": QuotaUsage.used + units},
                        where=QuotaUsage.used + units <= cap,
                    )
                    .returning(QuotaUsage.used)
                )
                used = (await session.execute(statement)).scalar_one_or_none()
                if used is None:
                    await session.rollback()
                    return Denial(window, cap, start + WINDOW_SECONDS[window])
                taken.append(TakenWindow(window, start, used, cap))
            await session.commit()
        return Grant(subject_id, feature, units, tuple(taken))

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
                        QuotaUsage.feature == grant.feature,
                        QuotaUsage.window == taken.window.value,
                        QuotaUsage.window_start == taken.window_start,
                        QuotaUsage.used >= grant.units,
                    )
                    .values(used=QuotaUsage.used - grant.units)
                )
            await session.commit()

    async def used(self, subject_id: int, features: Iterable[str]) -> dict[tuple[str, Window], int]:
        """Units used in each current window, for reports."""
        now = self.clock()
        starts = {w: window_start(w, now) for w in Window}
        async with self.sessions() as session:
            rows = await session.execute(
                select(QuotaUsage.feature, QuotaUsage.window, QuotaUsage.window_start, QuotaUsage.used).where(
                    QuotaUsage.user_id == subject_id, QuotaUsage.feature.in_(list(features))
                )
            )
            result: dict[tuple[str, Window], int] = {}
            for feature, window_name, start, used in rows:
                window = Window(window_name)
                if starts[window] == start:
                    result[(feature, window)] = used
            return result

    async def clear(self, subject_id: int, feature: str | None = None) -> int:
        async with self.sessions() as session:
            statement = delete(QuotaUsage).where(QuotaUsage.user_id == subject_id)
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
    plan: Plan
    features: tuple[FeatureReport, ...]


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
    """Per-user allowances shared by servers, DMs and user installs (keyed on the user id only).

    Capability cogs wrap every provider call:

        async with quotas.reserve(user.id, Feature.VISION, guild_id=itx.guild_id, role_ids=role_ids):
            result = await bot.providers.vision(...)

    Denial raises `QuotaExceeded` before the provider is called; an exception inside the block refunds.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = time.time) -> None:
        self.sessions = sessions
        self.counter = WindowCounter(sessions, clock=clock)

    @property
    def clock(self) -> Clock:
        return self.counter.clock

    async def plan_for(self, guild_id: int | None, role_ids: Iterable[int] = ()) -> Plan:
        if guild_id is None:
            return FREE_PLAN
        async with self.sessions() as session:
            settings = await session.get(GuildSettings, guild_id)
        if settings is None:
            return FREE_PLAN
        return resolve_plan(guild_id, role_ids, settings.role_plans or {}, settings.quota_bypass_role_id)

    async def consume(
        self,
        user_id: int,
        feature: Feature,
        *,
        guild_id: int | None = None,
        role_ids: Iterable[int] = (),
        units: int = 1,
    ) -> tuple[Grant, Plan]:
        """Take `units` from every capped window of `feature`, or raise QuotaExceeded naming the window."""
        plan = await self.plan_for(guild_id, role_ids)
        result = await self.counter.take(user_id, feature.value, plan.caps(feature), units)
        if isinstance(result, Denial):
            raise QuotaExceeded(
                feature, result.window if result.cap > 0 else None, result.cap, result.resets_at
            )
        return result, plan

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

    async def reset(self, user_id: int, feature: Feature | None = None) -> int:
        return await self.counter.clear(user_id, feature.value if feature else None)

    async def report(
        self, user_id: int, *, guild_id: int | None = None, role_ids: Iterable[int] = ()
    ) -> UsageReport:
        plan = await self.plan_for(guild_id, role_ids)
        used = await self.counter.used(user_id, [f.value for f in Feature])
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
        return UsageReport(plan, tuple(features))
