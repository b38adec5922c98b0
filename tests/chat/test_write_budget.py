"""The per-channel write scheduler, driven by an injected clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.discordkit.write_budget import ChannelWriteBudget, Priority


class FakeClock:
    """A monotonic clock that moves only when the test says; sleepers wake when it passes them."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        try:
            await future
        finally:
            self._sleepers = [(t, f) for t, f in self._sleepers if f is not future]

    async def advance(self, seconds: float, step: float = 0.05) -> None:
        target = self.now + seconds
        while self.now < target - 1e-9:
            self.now = min(self.now + step, target)
            for deadline, future in list(self._sleepers):
                if deadline <= self.now + 1e-9 and not future.done():
                    future.set_result(None)
            await settle()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    """Write operations that note the (fake) time they ran at."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.log: list[tuple[float, str]] = []

    def op(self, label: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            self.log.append((self.clock.now, label))
            return label

        return run

    def max_in_any(self, window: float) -> int:
        times = [t for t, _ in self.log]
        return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def budget(clock: FakeClock) -> ChannelWriteBudget:
    return ChannelWriteBudget(limit=4, window=5.5, reserve=1, clock=clock, sleep=clock.sleep)


async def test_writes_run_at_once_while_budget_remains(clock: FakeClock, budget: ChannelWriteBudget) -> None:
    rec = Recorder(clock)
    results = [budget.submit(1, rec.op(f"w{i}")) for i in range(3)]
    await settle()
    assert [label for _, label in rec.log] == ["w0", "w1", "w2"]
    assert [f.result() for f in results] == ["w0", "w1", "w2"]


async def test_never_more_than_the_limit_in_any_window(clock: FakeClock, budget: ChannelWriteBudget) -> None:
    rec = Recorder(clock)
    for i in range(20):
        budget.submit(1, rec.op(f"w{i}"), priority=Priority.FINAL)
    await clock.advance(40)
    assert len(rec.log) == 20
    assert rec.max_in_any(5.5) <= 4
    assert rec.max_in_any(5.0) <= 4  # Discord's own window never sees its fifth write


async def test_channels_have_separate_budgets(clock: FakeClock, budget: ChannelWriteBudget) -> None:
    rec = Recorder(clock)
    for channel in (1, 2):
        for i in range(3):
            budget.submit(channel, rec.op(f"c{channel}-{i}"))
    await settle()
    assert len(rec.log) == 6
    assert clock.now == 0


async def test_interim_edits_leave_a_slot_for_the_final_one(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    # A progress embed and a streamed reply keep editing as fast as they can.
    for i in range(30):
        budget.submit(1, rec.op(f"embed{i}"), priority=Priority.PROGRESS, key="embed")
        budget.submit(1, rec.op(f"reply{i}"), priority=Priority.PROGRESS, key="reply")
        await clock.advance(0.25)
    assert budget.recent_writes(1) == 3  # the reserved slot is still free
    final = budget.submit(1, rec.op("final"), priority=Priority.FINAL, key="reply")
    await settle()
    assert final.done() and final.result() == "final"
    assert rec.log[-1] == (clock.now, "final")


async def test_edits_of_one_message_are_coalesced_to_the_latest(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    for i in range(3):
        budget.submit(1, rec.op(f"fill{i}"))
    await settle()
    futures = [budget.submit(1, rec.op(f"edit{i}"), priority=Priority.PROGRESS, key="m") for i in range(10)]
    await clock.advance(6)
    assert [label for _, label in rec.log] == ["fill0", "fill1", "fill2", "edit9"]
    assert all(f.result() == "edit9" for f in futures)
    assert budget.stats.coalesced == 9


async def test_a_coalesced_write_takes_the_higher_priority(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    for i in range(3):
        budget.submit(1, rec.op(f"fill{i}"))
    await settle()
    budget.submit(1, rec.op("interim"), priority=Priority.PROGRESS, key="m")
    await settle()
    assert len(rec.log) == 3  # interim edits may not take the reserved slot
    budget.submit(1, rec.op("last"), priority=Priority.FINAL, key="m")
    await settle()
    assert rec.log[-1][1] == "last"
    assert len(rec.log) == 4


async def test_final_write_goes_before_waiting_interim_ones(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    for i in range(4):
        budget.submit(1, rec.op(f"fill{i}"), priority=Priority.FINAL)
    await settle()
    budget.submit(1, rec.op("progress"), priority=Priority.PROGRESS, key="p")
    budget.submit(1, rec.op("new message"))
    budget.submit(1, rec.op("final"), priority=Priority.FINAL)
    await clock.advance(12)
    assert [label for _, label in rec.log][4:] == ["final", "new message", "progress"]


async def test_a_failing_write_reports_its_error_and_the_queue_goes_on(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)

    async def boom() -> Any:
        raise RuntimeError("message deleted")

    failed = budget.submit(1, boom)
    after = budget.submit(1, rec.op("after"))
    await settle()
    with pytest.raises(RuntimeError, match="message deleted"):
        failed.result()
    assert after.result() == "after"


async def test_cancelled_write_uses_no_slot(clock: FakeClock, budget: ChannelWriteBudget) -> None:
    rec = Recorder(clock)
    for i in range(3):
        budget.submit(1, rec.op(f"fill{i}"))
    await settle()
    dropped = budget.submit(1, rec.op("dropped"), priority=Priority.PROGRESS)
    dropped.cancel()
    await clock.advance(0.5)
    final = budget.submit(1, rec.op("final"), priority=Priority.FINAL)
    await settle()
    assert final.result() == "final"
    assert "dropped" not in [label for _, label in rec.log]


def test_rejects_a_budget_without_room() -> None:
    with pytest.raises(ValueError):
        ChannelWriteBudget(limit=2, reserve=2)


async def test_a_burst_of_interim_edits_cannot_delay_a_new_message(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    budget.submit(1, rec.op("progress message"))  # another cog's progress message appears...
    for step in range(10):  # ...and is edited as fast as that cog likes
        budget.submit(1, rec.op(f"bar {step}"), priority=Priority.PROGRESS, key="bar")
        await clock.advance(0.05)
    budget.submit(1, rec.op("reply shown"))  # a chat reply's first message
    await settle()
    assert ("reply shown" in [label for _, label in rec.log]) and clock.now <= 0.5
    interim = [t for t, label in rec.log if label.startswith("bar ")]
    assert all(b - a >= budget.window / budget.limit - 1e-9 for a, b in itertools.pairwise(interim))
