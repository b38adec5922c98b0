"""The song job runner without Discord: leases, polling, failures, and exactly-once delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.providers.errors import AttemptRecord, CapabilityUnavailable, ProviderUnavailable
from bot.providers.types import SunoClip
from bot.services.song_jobs import (
    CANCELLED,
    DELIVERING,
    DONE,
    FAILED,
    PENDING,
    PollPolicy,
    SongJob,
    SongJobRunner,
    SongJobStore,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSuno:
    """Answers status checks from a script per clip; records every check."""

    def __init__(self) -> None:
        self.script: dict[str, list[str | BaseException]] = {}
        self.checks: list[str] = []

    async def __call__(self, clip_id: str, provider: str) -> SunoClip:
        self.checks.append(clip_id)
        steps = self.script.get(clip_id, ["finished"])
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, BaseException):
            raise step
        finished = step == "finished"
        return SunoClip(
            clip_id=clip_id,
            status=step,
            provider=provider,
            audio_url=f"https://cdn.example/{clip_id}.mp3" if finished else None,
            image_url=f"https://cdn.example/{clip_id}.png",
            video_url=f"https://cdn.example/{clip_id}.mp4" if finished else None,
        )


class FakeDelivery:
    """Keeps a channel of sent messages, so `find_delivered` can look for markers like the cog does."""

    def __init__(self) -> None:
        self.channel: list[str] = []
        self.progress: list[list[str]] = []
        self.fail_after_send = False

    async def show_progress(self, group: Sequence[SongJob]) -> None:
        self.progress.append([job.status for job in group])

    async def find_delivered(self, job: SongJob) -> int | None:
        for index, marker in enumerate(self.channel):
            if marker == job.marker:
                return index + 1
        return None

    async def deliver(self, job: SongJob) -> int:
        self.channel.append(job.marker)
        if self.fail_after_send:
            raise asyncio.CancelledError  # the process "dies" right after Discord got the message
        return len(self.channel)


POLICY = PollPolicy(first=1, longest=4, deadline=60, lease=10)


@pytest.fixture
def store(db_sessions: async_sessionmaker[AsyncSession]) -> SongJobStore:
    return SongJobStore(db_sessions)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def make(
    store: SongJobStore, clock: Clock, clips: Sequence[str] = ("c1", "c2"), user: int = 7
) -> list[SongJob]:
    return await store.create_group(
        user_id=user,
        guild_id=1,
        channel_id=2,
        provider="air",
        clip_ids=clips,
        request={"prompt": "sea", "model": "chirp-v3-5"},
        interaction_token="tok",
        interaction_expires_at=clock() + timedelta(minutes=15),
        first_poll_at=clock() + timedelta(seconds=1),
        now=clock(),
    )


def runner_for(
    store: SongJobStore, suno: FakeSuno, clock: Clock, delivery: FakeDelivery, owner: str
) -> SongJobRunner:
    runner = SongJobRunner(store, suno, POLICY, clock=clock, owner=owner)
    runner.attach(delivery)  # not enabled: the tests drive run_once, no loop runs
    return runner


async def step(runner: SongJobRunner) -> int:
    claimed = await runner.run_once()
    await runner.drain()
    return claimed


def test_poll_delay_grows_with_jitter_and_is_capped() -> None:
    policy = PollPolicy(first=2, longest=30, deadline=600, lease=60)
    assert policy.delay(0, lambda: 0.5) == pytest.approx(2)
    assert policy.delay(1, lambda: 0.5) == pytest.approx(3)
    assert policy.delay(20, lambda: 0.5) == pytest.approx(30)
    assert policy.delay(0, lambda: 0.0) == pytest.approx(1.6)
    assert policy.delay(0, lambda: 1.0) == pytest.approx(2.4)


async def test_a_job_is_polled_until_finished_then_delivered_once(store: SongJobStore, clock: Clock) -> None:
    suno, delivery = FakeSuno(), FakeDelivery()
    suno.script = {"c1": ["generating", "generating", "finished"], "c2": ["finished"]}
    await make(store, clock)
    runner = runner_for(store, suno, clock, delivery, "a")
    assert await step(runner) == 0  # not due yet: the first check comes after POLICY.first
    for _ in range(10):
        clock.advance(5)
        await step(runner)
    group = await store.group((await store.for_user(7))[0].group_id)
    assert [job.status for job in group] == [DONE, DONE]
    assert sorted(delivery.channel) == sorted(job.marker for job in group)
    assert suno.checks.count("c1") == 3 and suno.checks.count("c2") == 1
    assert [job.delivery_message_id for job in group] != [None, None]
    assert delivery.progress[-1] == [DONE, DONE]


async def test_two_runners_never_hold_the_same_job(store: SongJobStore, clock: Clock) -> None:
    await make(store, clock, clips=[f"c{i}" for i in range(6)])
    clock.advance(2)
    first = await store.claim("a", clock(), 10, 100)
    second = await store.claim("b", clock(), 10, 100)
    assert len(first) == 6 and second == []
    clock.advance(11)  # a's lease expired (a died): b takes every job over
    taken = await store.claim("b", clock(), 10, 100)
    assert len(taken) == 6 and await store.claim("a", clock(), 10, 100) == []


async def test_concurrent_claims_split_the_jobs(store: SongJobStore, clock: Clock) -> None:
    await make(store, clock, clips=[f"c{i}" for i in range(20)])
    clock.advance(2)
    results = await asyncio.gather(*(store.claim(f"r{i}", clock(), 10, 3) for i in range(8)))
    ids = [job.id for claimed in results for job in claimed]
    assert len(ids) == len(set(ids)) == 20


async def test_a_crash_between_send_and_record_delivers_once(store: SongJobStore, clock: Clock) -> None:
    suno, delivery = FakeSuno(), FakeDelivery()
    await make(store, clock, clips=["c1"])
    delivery.fail_after_send = True
    dying = runner_for(store, suno, clock, delivery, "dying")
    clock.advance(2)
    await dying.run_once()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.gather(*dying._working)
    [job] = await store.for_user(7)
    assert job.status == DELIVERING and len(delivery.channel) == 1
    # A second process, after the dead one's lease expired, finds the marker and does not resend.
    delivery.fail_after_send = False
    second = runner_for(store, suno, clock, delivery, "second")
    clock.advance(5)
    assert await step(second) == 0  # the lease is still the dead process's
    clock.advance(10)
    assert await step(second) == 1
    [job] = await store.for_user(7)
    assert job.status == DONE and job.delivery_message_id == 1
    assert len(delivery.channel) == 1


async def test_a_crash_after_the_intent_but_before_sending_sends_on_recovery(
    store: SongJobStore, clock: Clock
) -> None:
    suno, delivery = FakeSuno(), FakeDelivery()
    [job] = await make(store, clock, clips=["c1"])
    clock.advance(2)
    [claimed] = await store.claim("dead", clock(), 10, 5)
    assert await store.mark_delivering(claimed, "dead", {"status": "finished", "audio_url": "x"}, clock())
    clock.advance(11)
    await step(runner_for(store, suno, clock, delivery, "alive"))
    [job] = await store.for_user(7)
    assert job.status == DONE and delivery.channel == [job.marker]
    assert suno.checks == []  # a finished clip is not polled again


async def test_failure_unknown_status_transient_errors_and_deadline(
    store: SongJobStore, clock: Clock
) -> None:
    suno, delivery = FakeSuno(), FakeDelivery()
    broken = ProviderUnavailable("suno_status", [AttemptRecord("air", 200, "answered with an HTML page")])
    suno.script = {
        "bad": ["error"],
        "odd": ["mystery", "generating"],
        "flaky": [broken, "finished"],
        "gone": [CapabilityUnavailable("suno_status")],
        "slow": ["generating"],
    }
    await make(store, clock, clips=["bad", "odd", "flaky", "gone", "slow"])
    runner = runner_for(store, suno, clock, delivery, "r")
    clock.advance(2)
    await step(runner)
    jobs = {job.clip_id: job for job in await store.for_user(7)}
    assert jobs["bad"].status == FAILED and "failed to generate" in (jobs["bad"].error or "")
    assert jobs["odd"].status == PENDING and "unknown status ('mystery')" in (jobs["odd"].error or "")
    assert jobs["flaky"].status == PENDING and "not JSON" in (jobs["flaky"].error or "")
    assert jobs["gone"].status == FAILED and "no longer configured" in (jobs["gone"].error or "")
    clock.advance(5)
    await step(runner)
    jobs = {job.clip_id: job for job in await store.for_user(7)}
    assert jobs["flaky"].status == DONE
    assert jobs["odd"].error is None  # a known status clears the note
    clock.advance(60)
    await step(runner)
    jobs = {job.clip_id: job for job in await store.for_user(7)}
    assert jobs["slow"].status == FAILED and "not ready within 1 minute" in (jobs["slow"].error or "")


async def test_cancel_wins_over_a_poll_in_flight(store: SongJobStore, clock: Clock) -> None:
    suno, delivery = FakeSuno(), FakeDelivery()
    [job] = await make(store, clock, clips=["c1"])
    clock.advance(2)
    [claimed] = await store.claim("r", clock(), 10, 5)
    assert await store.cancel(job.group_id, 7, clock()) == 1
    assert await store.cancel(job.group_id, 8, clock()) == 0  # not someone else's
    assert not await store.mark_delivering(claimed, "r", {}, clock())
    assert not await store.reschedule(claimed, "r", next_poll_at=clock(), result={}, note=None, now=clock())
    [job] = await store.for_user(7)
    assert job.status == CANCELLED
    assert await store.active_groups(7) == 0
    assert delivery.channel == [] and suno.checks == []


async def test_release_at_shutdown_lets_a_restart_resume_at_once(store: SongJobStore, clock: Clock) -> None:
    await make(store, clock, clips=["c1", "c2"])
    clock.advance(2)
    assert len(await store.claim("old", clock(), 10, 5)) == 2
    assert await store.release_all("old") == 2
    assert len(await store.claim("new", clock(), 10, 5)) == 2


async def test_claims_on_postgresql_are_atomic_across_engines(postgres_url: str, clock: Clock) -> None:
    """Several processes on one PostgreSQL database (one engine each) split the jobs, none twice."""
    from bot.store.engine import create_engine, create_sessionmaker
    from bot.store.migrate import upgrade

    engines = [create_engine(postgres_url) for _ in range(4)]
    try:
        await upgrade(engines[0])
        stores = [SongJobStore(create_sessionmaker(engine)) for engine in engines]
        await make(stores[0], clock, clips=[f"c{i}" for i in range(40)])
        clock.advance(2)
        rounds = await asyncio.gather(
            *(stores[i % 4].claim(f"p{i}", clock(), 10, 4) for i in range(16)), return_exceptions=True
        )
        claimed = [job.id for result in rounds if isinstance(result, list) for job in result]
        assert len(claimed) == len(set(claimed))
        assert len(claimed) == 40  # rows being claimed by another process are skipped, not lost
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_clip_that_cannot_be_posted_is_given_up_after_some_attempts(
    store: SongJobStore, clock: Clock
) -> None:
    class Refusing(FakeDelivery):
        async def deliver(self, job: SongJob) -> int:
            raise RuntimeError("403 Missing Access")

    suno, delivery = FakeSuno(), Refusing()
    await make(store, clock, clips=["c1"])
    runner = runner_for(store, suno, clock, delivery, "r")
    for _ in range(30):
        clock.advance(10)
        await step(runner)
    [job] = await store.for_user(7)
    assert job.status == FAILED and "could not post it" in (job.error or "")
    assert job.attempts == 10
    assert delivery.progress[-1] == [FAILED]


async def test_next_due_is_the_earliest_unheld_check_or_lease_end(store: SongJobStore, clock: Clock) -> None:
    assert await store.next_due() is None
    first, second = await make(store, clock)
    assert await store.next_due() == clock() + timedelta(seconds=1)  # both checks are due then

    clock.advance(2)
    [claimed] = await store.claim("r", clock(), 10, 1)  # held until now + 10 s; the other is overdue
    assert await store.next_due() == clock() - timedelta(seconds=1)
    await store.claim("r", clock(), 10, 1)
    assert await store.next_due() == clock() + timedelta(seconds=10)  # only leases are left

    assert claimed.id in (first.id, second.id)
    assert await store.cancel(first.group_id, 7, clock()) == 2
    assert await store.next_due() is None  # finished jobs are never due


async def test_an_idle_runner_only_reads_and_claims_a_job_once_it_is_due(
    store: SongJobStore, db_engine: AsyncEngine
) -> None:
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0])

    suno, delivery = FakeSuno(), FakeDelivery()
    runner = SongJobRunner(store, suno, POLICY, idle=0.05, owner="r")
    runner.attach(delivery)
    event.listen(db_engine.sync_engine, "before_cursor_execute", record)
    try:
        runner.enable()
        await asyncio.sleep(0.3)
        idle_rounds = list(statements)
        # Created by "another process": the runner is not woken, it finds the job by reading.
        now = datetime.now(UTC)
        await store.create_group(
            user_id=7,
            guild_id=1,
            channel_id=2,
            provider="air",
            clip_ids=["c1"],
            request={"prompt": "sea", "model": "chirp-v3-5"},
            interaction_token="tok",
            interaction_expires_at=now + timedelta(minutes=15),
            first_poll_at=now + timedelta(seconds=0.2),
            now=now,
        )
        for _ in range(100):
            if delivery.channel:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.stop()
        event.remove(db_engine.sync_engine, "before_cursor_execute", record)

    # One claim (an UPDATE) at start, for jobs a restart left; then several rounds of one read each.
    assert idle_rounds[0] == "UPDATE"
    assert idle_rounds.count("SELECT") >= 3 and set(idle_rounds[1:]) == {"SELECT"}
    [job] = await store.for_user(7)
    assert job.status == DONE and delivery.channel == [job.marker]
