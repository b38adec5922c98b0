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
    # A progress embed and a streamed reply keep editing as fast as they can, for most of a window.
    for i in range(20):
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


def server_windows(log: list[tuple[float, str]], length: float) -> list[int]:
    """Writes per window of a server that opens a fixed `length`-second window at the first write."""
    counts: list[int] = []
    end = float("-inf")
    for at, _ in log:
        if at >= end - 1e-9:
            counts.append(0)
            end = at + length
        counts[-1] += 1
    return counts


async def test_a_reply_alone_in_its_channel_uses_every_slot_paced_evenly(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    budget.submit(1, rec.op("send"), owner="reply")
    for step in range(100):  # the model writes faster than the budget lets edits out
        budget.submit(1, rec.op(f"edit {step}"), priority=Priority.PROGRESS, key="e", owner="reply")
        await clock.advance(0.1)
    times = [t for t, _ in rec.log]
    assert server_windows(rec.log, budget.window)[:2] == [4, 4]  # no slot held back for anyone
    assert max(server_windows(rec.log, budget.window)) <= budget.limit
    assert all(b - a >= budget.window / budget.limit - 1e-9 for a, b in itertools.pairwise(times))


class FixedWindowServer:
    """Discord's side: 5 writes per fixed 5 s window opened by the first write; answers with headers."""

    def __init__(self, clock: FakeClock, budget: ChannelWriteBudget) -> None:
        self.clock, self.budget = clock, budget
        self.log: list[tuple[float, str]] = []
        self.end = float("-inf")
        self.remaining = 5

    def op(self, label: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            now = self.clock.now
            if now >= self.end:
                self.end, self.remaining = now + 5.0, 5
            self.remaining -= 1
            self.log.append((now, label))
            self.budget.observe(1, self.remaining, self.end - now)
            return label

        return run


async def test_the_servers_window_and_count_replace_the_guess(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    server = FixedWindowServer(clock, budget)
    budget.submit(1, server.op("send"), owner="reply")
    await settle()
    for step in range(80):
        budget.submit(1, server.op(f"edit {step}"), priority=Priority.PROGRESS, key="e", owner="reply")
        await clock.advance(0.1)
    times = [t for t, _ in server.log]
    assert budget.spacing(1) == pytest.approx(5.0 / 4)  # paced at Discord's window over the budget
    # The second window opens when Discord's does (5.0), not when the guess (5.5) would have it.
    assert times[:6] == pytest.approx([0.0, 1.25, 2.5, 3.75, 5.0, 6.25], abs=0.06)
    assert server.remaining >= 1 and min(server_windows(server.log, 5.0)) >= 1
    assert max(server_windows(server.log, 5.0)) == 4


async def test_a_server_count_of_one_left_holds_even_a_final_write(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)

    async def send() -> str:
        rec.log.append((clock.now, "send"))
        budget.observe(1, 1, 2.0)  # someone else (another process) used the channel's window
        return "send"

    await budget.write(1, send)
    final = budget.submit(1, rec.op("final"), priority=Priority.FINAL)
    await clock.advance(1.9)
    assert not final.done()  # the last slot would leave the bucket empty
    await clock.advance(0.2)
    assert final.result() == "final"


async def test_another_live_writer_brings_the_reserve_back(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    budget.submit(1, rec.op("a send"), owner="a")
    budget.submit(1, rec.op("b send"), owner="b")  # a second reply starts in the same channel
    for step in range(40):
        budget.submit(1, rec.op(f"a edit {step}"), priority=Priority.PROGRESS, key="a", owner="a")
        await clock.advance(0.1)
    assert budget.recent_writes(1) == 3  # a's edits leave the last slot to b's final write
    final = budget.submit(1, rec.op("b final"), priority=Priority.FINAL, key="b", owner="b")
    await settle()
    assert final.result() == "b final" and rec.log[-1] == (clock.now, "b final")


async def test_a_finished_writer_does_not_count_as_sharing(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    await budget.write(1, rec.op("earlier reply's final edit"), priority=Priority.FINAL, owner="old")
    budget.submit(1, rec.op("send"), owner="new")
    for step in range(50):
        budget.submit(1, rec.op(f"edit {step}"), priority=Priority.PROGRESS, key="e", owner="new")
        await clock.advance(0.1)
    assert server_windows(rec.log, budget.window)[0] == 4


async def test_few_slots_left_in_a_window_are_spread_until_it_resets(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    await budget.write(1, rec.op("earlier"), priority=Priority.FINAL, owner="old")
    await budget.write(1, rec.op("earlier too"), priority=Priority.FINAL, owner="old")
    budget.submit(1, rec.op("send"), owner="reply")
    for step in range(80):
        budget.submit(1, rec.op(f"edit {step}"), priority=Priority.PROGRESS, key="e", owner="reply")
        await clock.advance(0.1)
    times = [t for t, _ in rec.log]
    # One slot is left until the window resets at 5.5: the edit goes half-way, not at once then 5 s later.
    assert times[3] == pytest.approx(5.5 / 2, abs=0.06)
    assert times[4] == pytest.approx(5.5, abs=0.06)
    assert times[5] - times[4] == pytest.approx(budget.window / budget.limit, abs=0.06)


async def test_progress_wait_says_when_an_interim_edit_could_go_out(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    assert budget.progress_wait(1, "reply") == 0.0  # a channel never written to
    budget.submit(1, rec.op("send"), owner="reply")
    await settle()
    spacing = budget.spacing(1)
    assert budget.progress_wait(1, "reply") == pytest.approx(spacing)
    await clock.advance(1.0)
    assert budget.progress_wait(1, "reply") == pytest.approx(spacing - 1.0)
    edit = budget.submit(1, rec.op("edit"), priority=Priority.PROGRESS, key="e", owner="reply")
    await clock.advance(spacing - 1.0)
    assert edit.done() and rec.log[-1] == (pytest.approx(spacing), "edit")  # the slot it announced
    assert budget.progress_wait(1, "reply") == pytest.approx(spacing)


async def test_idle_channels_are_forgotten_and_the_sweep_is_not_paid_on_every_write(
    clock: FakeClock, budget: ChannelWriteBudget
) -> None:
    rec = Recorder(clock)
    for channel in range(600):  # one write each, as every interaction has a budget of its own
        budget.submit(channel, rec.op(f"c{channel}"))
    await settle()
    assert len(budget._channels) == 600  # the sweep at 512 found none idle: the next waits for 1,024
    await clock.advance(6)
    for channel in range(1000, 1500):
        budget.submit(channel, rec.op(f"c{channel}"))
    await settle()
    assert len(budget._channels) < 600  # the first 600, idle for a whole window, were forgotten
    assert all(channel in budget._channels for channel in range(1000, 1500))
    assert len(rec.log) == 1100
