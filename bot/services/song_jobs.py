"""Song jobs that survive restarts: rows in `jobs`, leased atomically, polled until delivered exactly once.

One `/suno` request makes one row per clip, all in one group that shares a status message. A runner
(one per bot process) claims due rows with a single `UPDATE … WHERE lease expired … RETURNING`, so two
processes on one database never poll the same row at once, polls the provider, and hands Discord work to
a `SongDelivery` (the songs cog's). Nothing here imports discord.

Exactly-once delivery: a finished clip first moves to `delivering` (the intent, recorded before any
message is sent), then the delivery looks for the job's marker in the channel and sends only if it is
not there, then the row moves to `done` with the message id. A process killed anywhere in between
leaves a row that the next lease holder finishes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ConcordError
from bot.providers.errors import (
    CapabilityUnavailable,
    InvalidRequest,
    OutcomeUnknown,
    ProviderUnavailable,
)
from bot.providers.types import SunoClip
from bot.store.models import Job

log = logging.getLogger(__name__)

KIND = "song"
PENDING, DELIVERING, DONE, FAILED, CANCELLED = "pending", "delivering", "done", "failed", "cancelled"
ACTIVE = (PENDING, DELIVERING)
KNOWN_WORKING = frozenset({"submitted", "queued", "generating", "streaming"})
KNOWN_FAILED = frozenset({"error", "failed", "failure"})
Clock = Callable[[], datetime]
# A finished clip that cannot be posted (no access to the channel any more) stops being retried.
MAX_DELIVERY_ATTEMPTS = 10
STOP_TIMEOUT = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every one Concord stores is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SongJob:
    """A snapshot of one job row (one clip)."""

    id: str
    group_id: str
    user_id: int
    guild_id: int | None
    channel_id: int
    provider: str
    clip_id: str
    request: dict[str, Any]
    status: str
    result: dict[str, Any]
    error: str | None
    attempts: int
    interaction_token: str | None
    interaction_expires_at: datetime | None
    status_message_id: int | None
    delivery_message_id: int | None
    created_at: datetime
    next_poll_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Job) -> SongJob:
        created = aware(row.created_at)
        next_poll = aware(row.next_poll_at)
        updated = aware(row.updated_at) or created
        assert created is not None and next_poll is not None and updated is not None
        return cls(
            id=row.id,
            group_id=row.group_id or row.id,
            user_id=row.user_id,
            guild_id=row.guild_id,
            channel_id=row.channel_id,
            provider=row.provider or "",
            clip_id=str((row.external_ids or [""])[0]),
            request=dict(row.request or {}),
            status=row.status,
            result=dict(row.result or {}),
            error=row.error,
            attempts=row.attempts,
            interaction_token=row.interaction_token,
            interaction_expires_at=aware(row.interaction_expires_at),
            status_message_id=row.progress_message_id,
            delivery_message_id=row.delivery_message_id,
            created_at=created,
            next_poll_at=next_poll,
            updated_at=updated,
        )

    @property
    def prompt(self) -> str:
        return str(self.request.get("prompt", ""))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def marker(self) -> str:
        """Written into the delivered message, so a restarted bot can tell it was already sent."""
        return f"song job {self.id}"

    def token_valid(self, now: datetime) -> bool:
        return (
            self.interaction_token is not None
            and self.interaction_expires_at is not None
            and now < self.interaction_expires_at
        )


class SongDelivery(Protocol):
    """The Discord side of the runner (the songs cog implements it)."""

    async def show_progress(self, group: Sequence[SongJob]) -> None:
        """Queue an edit of the group's one status message showing every clip's state; a later call
        supersedes an edit still waiting. Returns without waiting for Discord."""

    async def find_delivered(self, job: SongJob) -> int | None:
        """The id of a message in the channel that already carries `job.marker`, if any."""

    async def deliver(self, job: SongJob) -> int:
        """Send the finished clip (title, cover, audio, video link); returns the message id."""


class SongJobStore:
    """Every read and write of song job rows; each method is one short session."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def create_group(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        provider: str,
        clip_ids: Sequence[str],
        request: dict[str, Any],
        interaction_token: str | None,
        interaction_expires_at: datetime | None,
        first_poll_at: datetime,
        now: datetime,
    ) -> list[SongJob]:
        group_id = str(uuid.uuid4())
        rows = [
            Job(
                id=str(uuid.uuid4()),
                kind=KIND,
                status=PENDING,
                user_id=user_id,
                guild_id=guild_id,
                channel_id=channel_id,
                provider=provider,
                request=request,
                external_ids=[clip_id],
                result={"index": index, "count": len(clip_ids)},
                attempts=0,
                interaction_token=interaction_token,
                interaction_expires_at=interaction_expires_at,
                next_poll_at=first_poll_at,
                group_id=group_id,
                created_at=now,
                updated_at=now,
            )
            for index, clip_id in enumerate(clip_ids)
        ]
        async with self.sessions() as session, session.begin():
            session.add_all(rows)
        return [SongJob.of(row) for row in rows]

    async def set_status_message(self, group_id: str, message_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.group_id == group_id).values(progress_message_id=message_id)
            )

    async def group(self, group_id: str) -> list[SongJob]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Job).where(Job.group_id == group_id, Job.kind == KIND).order_by(Job.created_at, Job.id)
            )
            jobs = [SongJob.of(row) for row in rows]
        return sorted(jobs, key=lambda j: int(j.result.get("index", 0)))

    async def active_groups(self, user_id: int) -> int:
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count(func.distinct(Job.group_id))).where(
                    Job.kind == KIND, Job.user_id == user_id, Job.status.in_(ACTIVE)
                )
            )
        return int(count or 0)

    async def for_user(self, user_id: int, limit: int = 10) -> list[SongJob]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Job)
                .where(Job.kind == KIND, Job.user_id == user_id)
                .order_by(Job.created_at.desc(), Job.id)
                .limit(limit)
            )
            return [SongJob.of(row) for row in rows]

    async def find_group(self, user_id: int, prefix: str) -> str | None:
        """The caller's group whose id starts with `prefix` (as /suno status shows it)."""
        async with self.sessions() as session:
            found = await session.scalars(
                select(Job.group_id)
                .where(
                    Job.kind == KIND, Job.user_id == user_id, Job.group_id.startswith(prefix, autoescape=True)
                )
                .distinct()
                .limit(2)
            )
            groups = [g for g in found if g]
        return groups[0] if len(groups) == 1 else None

    async def cancel(self, group_id: str, user_id: int, now: datetime) -> int:
        """Stop watching the group's clips that are still generating; returns how many were stopped."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(Job)
                .where(Job.group_id == group_id, Job.user_id == user_id, Job.status == PENDING)
                .values(status=CANCELLED, error="Cancelled by the requester.", updated_at=now)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def claim(self, owner: str, now: datetime, lease: float, limit: int) -> list[SongJob]:
        """Take up to `limit` due jobs whose lease is free or expired, in one atomic UPDATE … RETURNING."""
        free = or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)
        due = (
            select(Job.id)
            .where(Job.kind == KIND, Job.status.in_(ACTIVE), Job.next_poll_at <= now, free)
            .order_by(Job.next_poll_at)
            .limit(limit)
            # PostgreSQL: rows another process is claiming right now are skipped, not waited for
            # (SQLite ignores this; its writers take turns anyway).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(Job)
            # The lease test is repeated on the row being updated, so a row another process took between
            # the subquery and the update is skipped rather than stolen.
            .where(Job.id.in_(due), free, Job.status.in_(ACTIVE))
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease))
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        async with self.sessions() as session, session.begin():
            rows = (await session.scalars(statement)).all()
            return [SongJob.of(row) for row in rows]

    async def _update_held(self, job_id: str, owner: str, expected: str, **values: Any) -> bool:
        """Change a row this process holds, only while it is still `expected` (so a cancel wins)."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.status == expected)
                .values(**values)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def reschedule(
        self,
        job: SongJob,
        owner: str,
        *,
        next_poll_at: datetime,
        result: dict[str, Any],
        note: str | None,
        now: datetime,
    ) -> bool:
        return await self._update_held(
            job.id,
            owner,
            PENDING,
            next_poll_at=next_poll_at,
            result=result,
            error=note,
            attempts=Job.attempts + 1,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    async def fail(
        self, job: SongJob, owner: str, reason: str, result: dict[str, Any], now: datetime
    ) -> bool:
        return await self._update_held(
            job.id,
            owner,
            PENDING,
            status=FAILED,
            error=reason,
            result=result,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    async def mark_delivering(self, job: SongJob, owner: str, result: dict[str, Any], now: datetime) -> bool:
        """Record the intent to deliver, before anything is sent."""
        return await self._update_held(
            job.id, owner, PENDING, status=DELIVERING, result=result, error=None, updated_at=now
        )

    async def mark_done(self, job: SongJob, owner: str, message_id: int, now: datetime) -> bool:
        return await self._update_held(
            job.id,
            owner,
            DELIVERING,
            status=DONE,
            delivery_message_id=message_id,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    async def retry_delivery(self, job: SongJob, owner: str, at: datetime, note: str, now: datetime) -> bool:
        return await self._update_held(
            job.id,
            owner,
            DELIVERING,
            next_poll_at=at,
            error=note,
            attempts=Job.attempts + 1,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    async def give_up_delivery(self, job: SongJob, owner: str, reason: str, now: datetime) -> bool:
        return await self._update_held(
            job.id,
            owner,
            DELIVERING,
            status=FAILED,
            error=reason,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    async def extend(self, job_id: str, owner: str, until: datetime) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(lease_expires_at=until)
            )

    async def release_all(self, owner: str) -> int:
        """Give back every lease this process holds (a clean shutdown), so a restart resumes at once."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(Job).where(Job.lease_owner == owner).values(lease_owner=None, lease_expires_at=None)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def next_due(self) -> datetime | None:
        """When the runner next has work: the earliest check of an unheld active job, or the earliest end
        of a lease on one (another process may have died holding it). One statement."""
        held = Job.lease_owner.is_not(None)
        async with self.sessions() as session:
            check, lease_end = (
                await session.execute(
                    select(
                        func.min(case((held, None), else_=Job.next_poll_at)),
                        func.min(case((held, Job.lease_expires_at), else_=None)),
                    ).where(Job.kind == KIND, Job.status.in_(ACTIVE))
                )
            ).one()
        candidates = [t for t in (aware(check), aware(lease_end)) if t is not None]
        return min(candidates) if candidates else None


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """First check soon, then slower (×`growth` each time, ±`jitter`), never slower than `longest`."""

    first: float
    longest: float
    deadline: float
    lease: float
    growth: float = 1.5
    jitter: float = 0.2

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.longest, self.first * self.growth ** max(attempts, 0))
        return max(0.05, base * (1 - self.jitter + 2 * self.jitter * rand()))


def describe_problem(error: BaseException) -> str:
    """A sentence for the status embed about a status check that failed."""
    attempts = getattr(error, "attempts", None) or []
    reasons = " ".join(str(a.reason) for a in attempts).lower()
    if "html" in reasons or "not json" in reasons or "json" in reasons:
        return "The song service answered with something that is not JSON; checking again."
    if isinstance(error, ConcordError):
        return "The song service did not answer the last check; checking again."
    return "The last status check failed; checking again."


SunoStatus = Callable[[str, str], Awaitable[SunoClip]]


class SongJobRunner:
    """Polls song jobs for one bot process. `start(delivery)` when the songs cog loads; `stop()` at close."""

    def __init__(
        self,
        store: SongJobStore,
        status: SunoStatus,
        policy: PollPolicy,
        *,
        clock: Clock = _utcnow,
        owner: str | None = None,
        batch: int = 8,
        idle: float = 5.0,
    ) -> None:
        self.store = store
        self._status = status
        self.policy = policy
        self._clock = clock
        self.owner = owner or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._batch = batch
        self._idle = idle
        self._delivery: SongDelivery | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._working: set[asyncio.Task[None]] = set()
        self._group_locks: dict[str, asyncio.Lock] = {}
        self._in_flight: set[str] = set()
        self._enabled = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def attach(self, delivery: SongDelivery) -> None:
        """The songs cog hands over its Discord side (cog_load); polling starts once the bot runs."""
        self._delivery = delivery
        if self._enabled:
            self._start()

    def enable(self) -> None:
        """The bot is starting for real (setup_hook): poll whenever a delivery is attached. Describing
        the command tree loads the cogs without this, and so touches no database."""
        self._enabled = True
        if self._delivery is not None:
            self._start()

    def _start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="song-jobs")

    def wake(self) -> None:
        """A job was created or changed: look for due work now instead of at the next tick."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return  # never polled, so no lease to give back
        task.cancel()
        # Bounded waits: shutdown must not hang on a step that is slow to notice its cancellation
        # (its lease simply expires and another process takes the job over).
        await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        working = list(self._working)
        for job_task in working:
            job_task.cancel()
        if working:
            _, stuck = await asyncio.wait(working, timeout=STOP_TIMEOUT)
            if stuck:
                log.warning("%d song job step(s) did not stop in time; their leases will expire", len(stuck))
        try:
            released = await self.store.release_all(self.owner)
        except Exception:
            log.exception("Could not release song job leases; they expire on their own")
        else:
            if released:
                log.info("Released %d song job lease(s) at shutdown", released)

    async def _loop(self) -> None:
        # An idle round is one read (`next_due`): jobs are claimed only when one is due, or when this
        # process just created one (`wake`).
        due: datetime | None = self._clock()  # at start: jobs left by a restart are due now
        while True:
            if due is not None and due <= self._clock():
                try:
                    await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("The song job runner failed a round; trying again shortly")
            due = await self._sleep_until_due()

    async def _sleep_until_due(self) -> datetime | None:
        """Sleep until the next job is due (at most the idle pause); returns when work is due."""
        now = self._clock()
        pause = self._idle
        due: datetime | None = None
        with contextlib.suppress(Exception):
            due = await self.store.next_due()
        if due is not None:
            pause = min(pause, max(0.05, (due - now).total_seconds()))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), pause)
        except TimeoutError:
            return due
        return self._clock()  # woken: a job was just created or changed

    async def run_once(self) -> int:
        """Claim the due jobs and start working on each; returns how many were claimed."""
        room = self._batch - len(self._working)
        if room <= 0:
            return 0
        claimed = await self.store.claim(self.owner, self._clock(), self.policy.lease, room)
        if claimed:
            log.debug("Runner %s claimed %d song job(s)", self.owner, len(claimed))
        for job in claimed:
            task = asyncio.get_running_loop().create_task(self._work(job), name=f"song-job-{job.id[:8]}")
            self._working.add(task)
            task.add_done_callback(self._working.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Wait for the jobs being worked on (tests and benchmarks)."""
        while self._working:
            await asyncio.gather(*list(self._working), return_exceptions=True)

    async def _work(self, job: SongJob) -> None:
        if job.id in self._in_flight:
            return  # this process is still on it (its lease ran out and was renewed by the claim)
        self._in_flight.add(job.id)
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(job.id))
        try:
            if job.status == DELIVERING:
                await self._deliver(job)
            else:
                await self._poll(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Song job %s failed a step; it will be retried when its lease expires", job.id)
        finally:
            keeper.cancel()
            self._in_flight.discard(job.id)
            self._wake.set()  # the job's next check may be due before anything else

    async def _keep_lease(self, job_id: str) -> None:
        """Renew the lease while a slow step (a download, a send) runs, so no other process takes over."""
        while True:
            await asyncio.sleep(self.policy.lease / 3)
            with contextlib.suppress(Exception):
                until = self._clock() + timedelta(seconds=self.policy.lease)
                await self.store.extend(job_id, self.owner, until)

    async def _poll(self, job: SongJob) -> None:
        now = self._clock()
        result = dict(job.result)
        if (now - job.created_at).total_seconds() >= self.policy.deadline:
            minutes = max(1, round(self.policy.deadline / 60))
            reason = f"The song was not ready within {minutes} minute(s), so the bot stopped waiting for it."
            await self.store.fail(job, self.owner, reason, result, now)
            await self._show(job.group_id)
            return
        try:
            clip = await self._status(job.clip_id, job.provider)
        except (CapabilityUnavailable, InvalidRequest) as exc:
            reason = (
                "The AI provider that made this song is no longer configured, so it cannot be checked."
                if isinstance(exc, CapabilityUnavailable)
                else exc.user_message
            )
            await self.store.fail(job, self.owner, reason, result, self._clock())
            await self._show(job.group_id)
            return
        except (ProviderUnavailable, OutcomeUnknown) as exc:
            log.info("Song job %s: status check failed: %s", job.id, exc)
            await self._later(job, result, describe_problem(exc))
            return
        result.update(
            status=clip.status,
            audio_url=clip.audio_url,
            image_url=clip.image_url,
            video_url=clip.video_url,
        )
        status = clip.status.lower()
        if clip.finished:
            if await self.store.mark_delivering(job, self.owner, result, self._clock()):
                await self._show(job.group_id)
                fresh = await self._reload(job)
                if fresh is not None:
                    await self._deliver(fresh)
            return
        if status in KNOWN_FAILED:
            await self.store.fail(
                job,
                self.owner,
                "The song service reported that this song failed to generate.",
                result,
                self._clock(),
            )
            await self._show(job.group_id)
            return
        note = None
        if status not in KNOWN_WORKING:
            shown = clip.status[:40]
            note = f"The song service reported an unknown status ({shown!r}); still waiting."
        await self._later(job, result, note)

    async def _later(self, job: SongJob, result: dict[str, Any], note: str | None) -> None:
        now = self._clock()
        at = now + timedelta(seconds=self.policy.delay(job.attempts))
        if await self.store.reschedule(job, self.owner, next_poll_at=at, result=result, note=note, now=now):
            await self._show(job.group_id)

    async def _reload(self, job: SongJob) -> SongJob | None:
        for row in await self.store.group(job.group_id):
            if row.id == job.id:
                return row
        return None

    async def _deliver(self, job: SongJob) -> None:
        """Send a finished clip once: look for its marker first, send only when it is not there."""
        delivery = self._delivery
        assert delivery is not None
        try:
            message_id = await delivery.find_delivered(job)
            if message_id is None:
                message_id = await delivery.deliver(job)
        except Exception as exc:
            now = self._clock()
            if job.attempts >= MAX_DELIVERY_ATTEMPTS:
                log.warning(
                    "Song job %s: delivery failed %d times (%s); giving up", job.id, job.attempts, exc
                )
                reason = "The song was finished, but the bot could not post it here."
                await self.store.give_up_delivery(job, self.owner, reason, now)
                await self._show(job.group_id)
                return
            log.warning("Song job %s: delivery failed (%s); retrying", job.id, exc)
            at = now + timedelta(seconds=self.policy.delay(job.attempts))
            note = "Posting the finished song failed; trying again."
            await self.store.retry_delivery(job, self.owner, at, note, now)
            return
        await self.store.mark_done(job, self.owner, message_id, self._clock())
        await self._show(job.group_id)

    async def refresh(self, group_id: str) -> None:
        """Show the group's current state now (after a cancel, for instance)."""
        if self._delivery is not None:
            await self._show(group_id)

    async def _show(self, group_id: str) -> None:
        """Edit the group's status message from the rows as they are now."""
        assert self._delivery is not None
        lock = self._group_locks.setdefault(group_id, asyncio.Lock())
        async with lock:
            group = await self.store.group(group_id)
            if not group:
                return
            try:
                await self._delivery.show_progress(group)
            except Exception as exc:
                log.info("Could not update the status message of song group %s: %s", group_id, exc)
            if all(not job.active for job in group):
                self._group_locks.pop(group_id, None)
