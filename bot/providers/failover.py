"""Provider failover: the candidate plan, retry policy, circuit breaker and the one attempt loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bot.providers.errors import AttemptRecord, OutcomeUnknown, ProviderUnavailable
from bot.providers.redact import Redactor
from bot.providers.transport import MAX_COOLDOWN, Failure, Provider

log = logging.getLogger("bot.providers.client")

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 10.0
    """A Retry-After longer than this is not waited for: the next provider is tried instead."""
    breaker_threshold: int = 3
    breaker_cooldown: float = 30.0
    """How long a provider rests after `breaker_threshold` failures in a row (at most 30 s)."""
    call_deadline: float = 120.0
    """Wall-clock budget for one call across every retry and provider (streams: until the first chunk)."""
    models_ttl: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.breaker_cooldown <= MAX_COOLDOWN:
            raise ValueError(f"breaker_cooldown must be 0-{MAX_COOLDOWN:g} s")


@dataclass(slots=True)
class Breaker:
    """Closed, or open (resting) until a time. Every rest is capped at MAX_COOLDOWN."""

    failures: int = 0
    open_until: float = 0.0

    def available(self, now: float) -> bool:
        return now >= self.open_until

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def failure(self, now: float, policy: RetryPolicy) -> None:
        self.failures += 1
        if self.failures >= policy.breaker_threshold:
            self.rest_until(now + policy.breaker_cooldown, now)

    def rest_until(self, until: float, now: float) -> None:
        self.open_until = min(max(self.open_until, until), now + MAX_COOLDOWN)


@dataclass(slots=True)
class Route:
    """A provider with its breaker: what the attempt loop walks over."""

    provider: Provider
    breaker: Breaker = field(default_factory=Breaker)


@dataclass(slots=True)
class Attempt(Generic[P]):
    """One try on one provider. The caller reports how it went with `succeeded` or `failed`."""

    route: Route
    prepared: P
    budget: float
    """Seconds left of the call's deadline."""
    probe: bool = False
    """True when every candidate was resting and this try checks whether one has recovered."""
    failure: Failure | None = None
    final: bool = False
    done: bool = False

    @property
    def provider(self) -> Provider:
        return self.route.provider

    def succeeded(self) -> None:
        self.done = True

    def failed(self, failure: Failure, *, final: bool = False) -> None:
        """`final`: no further try helps (a stream broke after its first chunk)."""
        self.failure = failure
        self.final = final


class Failover:
    """Walks a call's candidates in order: retries with backoff, honours Retry-After, skips resting
    providers (or probes one when all rest), and stops at the call's deadline."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        random: Callable[[], float],
        redact: Redactor,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._redact = redact

    def backoff(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            return retry_after if retry_after <= self.policy.retry_after_cap else None
        delay = min(self.policy.backoff_max, self.policy.backoff_base * 2**attempt)
        return delay * (0.5 + 0.5 * self._random())

    def record(self, attempts: list[AttemptRecord], route: Route, what: str, failure: Failure) -> None:
        p = route.provider
        reason = self._redact(failure.reason)
        attempts.append(AttemptRecord(p.name, failure.status, reason))
        log.warning("provider %s (%s) failed %s: %s", p.name, p.profile.name, what, reason)
        now = self._clock()
        if failure.counts:
            route.breaker.failure(now, self.policy)
        if failure.retry_after is not None and failure.retry_after > self.policy.retry_after_cap:
            route.breaker.rest_until(now + failure.retry_after, now)

    async def attempts(
        self, what: str, plans: Sequence[tuple[Route, P]], *, idempotent: bool = True
    ) -> AsyncGenerator[Attempt[P], None]:
        """Every try of one call, in order; ends when a try succeeds, or raises ProviderUnavailable.

        The one loop that plain and streamed calls share: the caller runs each yielded attempt and
        reports its outcome on it before asking for the next.
        """
        attempts: list[AttemptRecord] = []
        deadline = self._clock() + self.policy.call_deadline
        now = self._clock()
        probe_route: Route | None = None
        if plans and not any(route.breaker.available(now) for route, _ in plans):
            # Every candidate rests: let one request through to the one that recovers first.
            probe_route = min((route for route, _ in plans), key=lambda r: r.breaker.open_until)
        for route, prepared in plans:
            p = route.provider
            probe = route is probe_route
            if not probe and not route.breaker.available(self._clock()):
                attempts.append(AttemptRecord(p.name, None, "skipped: cooling down after recent failures"))
                continue
            tries = 1 if probe else p.config.retries + 1
            for attempt in range(tries):
                budget = deadline - self._clock()
                if budget <= 0:
                    attempts.append(AttemptRecord(p.name, None, "skipped: the call's deadline has passed"))
                    raise ProviderUnavailable(what, attempts)
                current = Attempt(route, prepared, budget, probe)
                yield current
                if current.done:
                    route.breaker.success()
                    return
                failure = current.failure
                if failure is None:
                    raise RuntimeError("an attempt ended without reporting its outcome")
                self.record(attempts, route, what, failure)
                if current.final:
                    return
                if failure.unknown_outcome and not idempotent:
                    raise OutcomeUnknown(what, attempts)
                if not failure.retryable or attempt == tries - 1:
                    break
                if not route.breaker.available(self._clock()):
                    break
                delay = self.backoff(attempt, failure.retry_after)
                if delay is None or self._clock() + delay >= deadline:
                    break
                await self._sleep(delay)
        raise ProviderUnavailable(what, attempts)
