"""One write scheduler per bot: every send and edit in a channel shares Discord's per-channel budget.

Discord allows 5 message writes (sends and edits together) per channel in a FIXED window of 5 seconds that
opens at the first write, and says so in every answer (X-RateLimit-Remaining, X-RateLimit-Reset-After);
the sixth write is a 429. Concord never lets it come to that, and never even empties the bucket: all
writes to a channel (streamed chat replies, other cogs' progress embeds) go through this scheduler, which
keeps at most `limit` writes in each of Discord's windows. The scheduler opens a window at its own first
write (assuming the conservative length `window` until told otherwise) and takes the server's word for
where the window ends and how many writes remain whenever `observe()` is fed a response's headers.

Interim edits are coalesced (only the latest text of a message is worth sending) and paced evenly, one
per `window / limit` seconds after the channel's previous write (or further apart, when the current
window has fewer slots left than that pace would use before it resets). A writer (`owner`) that has the
channel to itself may use every slot; while another writer is live in the channel (it has writes waiting, or
wrote in this window and has not finished), interim edits and new messages leave the last `reserve` slots
to FINAL writes, so the write that finishes a reply goes out at once even in a busy channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
SWEEP_FLOOR = 512
EPSILON = 1e-6
"""Clock readings this close count as the same moment (a sleep may wake a hair early)."""


class Priority(IntEnum):
    """Lower goes first. Only FINAL writes may use the reserved slots."""

    FINAL = 0
    """The write that completes a reply (its last edit, a continuation message the user waits for)."""
    NORMAL = 1
    """A new message: the first part of a reply, a progress embed's first appearance."""
    PROGRESS = 2
    """An interim edit that a later one replaces: streamed text, a progress bar."""


@dataclass(eq=False)
class _Write:
    op: Callable[[], Awaitable[Any]]
    priority: Priority
    seq: int
    key: Hashable | None
    owner: Hashable
    future: asyncio.Future[Any]
    submitted_at: float

    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass(eq=False)
class _Channel:
    pending: list[_Write] = field(default_factory=list)
    used: int = 0
    """Writes counted in the current window (from the server's Remaining once it has answered)."""
    window_end: float = float("-inf")
    """When the current window resets (the server's Reset-After once known; else a conservative guess)."""
    length: float | None = None
    """The server's window length, learned from the Reset-After of a window's first write."""
    last_write: float = float("-inf")
    writers: dict[Hashable, Priority] = field(default_factory=dict)
    """Owners that wrote in the current window, with the priority of their latest write."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


@dataclass
class WriteStats:
    """What the scheduler did, for logs, benchmarks and tests."""

    writes: int = 0
    coalesced: int = 0
    observed: int = 0
    max_wait: float = 0.0
    max_final_wait: float = 0.0


class ChannelWriteBudget:
    """Schedules the bot's message writes per channel under a shared budget.

    `submit()` queues one write (a coroutine factory that performs the HTTP call) and returns a future
    with its result. Writes with the same `key` that are still waiting are coalesced: the newest
    replaces the older one, and both futures get the newest one's result. `owner` names the writer (a
    streamed reply, a progress embed); writes without one are each their own writer.
    """

    def __init__(
        self,
        *,
        limit: int = 4,
        window: float = 5.5,
        reserve: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or window <= 0 or not 0 <= reserve < limit:
            raise ValueError("need limit >= 1, window > 0 and 0 <= reserve < limit")
        self.limit = limit
        self.window = window
        self.reserve = reserve
        self._clock = clock
        self._sleep = sleep
        self._channels: dict[int, _Channel] = {}
        self._sweep_at = SWEEP_FLOOR
        """Idle channels are forgotten when this many are known (then twice as many as remain): every
        interaction has a budget of its own, so a busy bot meets a new one on almost every write."""
        self._seq = itertools.count()
        self.stats = WriteStats()

    def submit(
        self,
        channel_id: int,
        op: Callable[[], Awaitable[T]],
        *,
        priority: Priority = Priority.NORMAL,
        key: Hashable | None = None,
        owner: Hashable | None = None,
    ) -> asyncio.Future[T]:
        """Queue a write to `channel_id`; `op` is called when the budget allows."""
        channel = self._channels.get(channel_id)
        if channel is None:
            self._forget_idle_channels()
            channel = self._channels[channel_id] = _Channel()
        loop = asyncio.get_running_loop()
        if key is not None:
            for waiting in channel.pending:
                if waiting.key == key:
                    waiting.op = op
                    waiting.priority = min(waiting.priority, priority)
                    self.stats.coalesced += 1
                    channel.wake.set()
                    return waiting.future
        future: asyncio.Future[T] = loop.create_future()
        future.add_done_callback(_consume_exception)
        seq = next(self._seq)
        writer: Hashable = owner if owner is not None else key if key is not None else ("write", seq)
        channel.pending.append(_Write(op, priority, seq, key, writer, future, self._clock()))
        channel.wake.set()
        if channel.worker is None or channel.worker.done():
            channel.worker = loop.create_task(self._run(channel), name=f"writes-{channel_id}")
        return future

    async def write(
        self,
        channel_id: int,
        op: Callable[[], Awaitable[T]],
        *,
        priority: Priority = Priority.NORMAL,
        key: Hashable | None = None,
        owner: Hashable | None = None,
    ) -> T:
        """Submit and wait for the result."""
        return await self.submit(channel_id, op, priority=priority, key=key, owner=owner)

    def observe(self, channel_id: int, remaining: int, reset_after: float) -> None:
        """Discord's answer to a write in this channel: `remaining` writes left in its window, which
        resets in `reset_after` seconds. The server's count replaces the scheduler's own."""
        channel = self._channels.get(channel_id)
        if channel is None or remaining < 0 or not 0 <= reset_after <= 3600:
            return
        now = self._clock()
        self.stats.observed += 1
        # One slot is never used, so no answer ever says the bucket is empty.
        used = max(self.limit + 1 - remaining, 0)
        if used <= 1 and reset_after > 0:  # the write that opened the window: its length
            channel.length = min(reset_after, self.window)
        channel.used = used
        channel.window_end = now + reset_after

    @property
    def progress_spacing(self) -> float:
        """Least time between two interim edits in one channel: the budget spread evenly."""
        return self.window / self.limit

    def spacing(self, channel_id: int) -> float:
        """The pacing of interim edits in this channel: its window (as the server told it) over `limit`."""
        channel = self._channels.get(channel_id)
        return self._spacing(channel) if channel is not None else self.progress_spacing

    def _spacing(self, channel: _Channel) -> float:
        return (channel.length or self.window) / self.limit

    def _pace(self, channel: _Channel, capacity: int) -> float:
        """Time from the channel's last write to its next interim edit: the window over `limit`, or
        longer when fewer slots are left in the current window than that pace would use (the gaps to the
        window's reset are then spread evenly, instead of a burst followed by a long wait)."""
        spacing = self._spacing(channel)
        left = capacity - channel.used
        if channel.used and left > 0:
            spacing = max(spacing, (channel.window_end - channel.last_write) / (left + 1))
        return spacing

    def capacity(self, priority: Priority, *, shared: bool = True) -> int:
        """Writes per window this priority may bring the count to; only FINAL writes take the reserve,
        and only while another writer shares the channel."""
        return self.limit if priority == Priority.FINAL or not shared else self.limit - self.reserve

    def recent_writes(self, channel_id: int) -> int:
        """Writes counted in this channel's current window."""
        channel = self._channels.get(channel_id)
        if channel is None:
            return 0
        self._roll(channel, self._clock())
        return channel.used

    def pending(self, channel_id: int) -> int:
        channel = self._channels.get(channel_id)
        return len(channel.pending) if channel else 0

    async def close(self) -> None:
        """Cancel every queued write (at shutdown)."""
        for channel in self._channels.values():
            for waiting in channel.pending:
                waiting.future.cancel()
            channel.pending.clear()
            if channel.worker is not None:
                channel.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await channel.worker
        self._channels.clear()

    @staticmethod
    def _roll(channel: _Channel, now: float) -> None:
        if now >= channel.window_end and channel.used:
            channel.used = 0
            channel.writers.clear()

    @staticmethod
    def _shared(channel: _Channel, writer: Hashable) -> bool:
        """Whether another writer is live in the channel: it has writes waiting, or it wrote in this
        window and its latest write did not finish it."""
        return any(w.owner != writer for w in channel.pending) or any(
            owner != writer and priority != Priority.FINAL for owner, priority in channel.writers.items()
        )

    def _ready_at(self, channel: _Channel, priority: Priority, writer: Hashable, now: float) -> float:
        """When a write of this priority by `writer` may go out (`now` or earlier: at once). The
        channel's window must have been rolled to `now`."""
        capacity = self.capacity(priority, shared=self._shared(channel, writer))
        if channel.used >= capacity:
            return channel.window_end + EPSILON  # until the window resets
        if priority == Priority.PROGRESS:
            # Interim edits are paced, never bursted: a burst of them would use up the window and
            # leave a reply's first message (or another cog's) waiting for seconds.
            return channel.last_write + self._pace(channel, capacity)
        return now

    def progress_wait(self, channel_id: int, writer: Hashable) -> float:
        """Seconds until an interim edit by `writer` in this channel could go out (0: now)."""
        channel = self._channels.get(channel_id)
        if channel is None:
            return 0.0
        now = self._clock()
        self._roll(channel, now)
        return max(0.0, self._ready_at(channel, Priority.PROGRESS, writer, now) - now)

    def _forget_idle_channels(self) -> None:
        if len(self._channels) < self._sweep_at:
            return
        now = self._clock()
        for channel_id, channel in list(self._channels.items()):
            self._roll(channel, now)
            if not channel.pending and not channel.used and now >= channel.last_write + self.window:
                del self._channels[channel_id]
        self._sweep_at = max(SWEEP_FLOOR, 2 * len(self._channels))

    async def _run(self, channel: _Channel) -> None:
        while channel.pending:
            channel.wake.clear()
            now = self._clock()
            self._roll(channel, now)
            item = min(channel.pending, key=_Write.order)
            ready = self._ready_at(channel, item.priority, item.owner, now)
            if now + EPSILON < ready:
                await self._wait(channel, ready - now)
                continue
            channel.pending.remove(item)
            if item.future.cancelled():
                continue
            if channel.used == 0:  # this write opens a window; the server's answer will say its end
                channel.window_end = now + self.window
            channel.used += 1
            channel.last_write = now
            channel.writers[item.owner] = item.priority
            waited = now - item.submitted_at
            self.stats.writes += 1
            self.stats.max_wait = max(self.stats.max_wait, waited)
            if item.priority == Priority.FINAL:
                self.stats.max_final_wait = max(self.stats.max_final_wait, waited)
            try:
                result = await item.op()
            except asyncio.CancelledError:
                item.future.cancel()
                raise
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)

    async def _wait(self, channel: _Channel, seconds: float) -> None:
        """Sleep until a slot frees, or until a new (maybe more urgent) write arrives."""
        sleeper = asyncio.ensure_future(self._sleep(max(seconds, 0.0)))
        waker = asyncio.ensure_future(channel.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # Fire-and-forget progress edits may fail (message deleted); their errors are logged, not raised.
    if not future.cancelled() and future.exception() is not None:
        log.debug("A scheduled write failed: %r", future.exception())
