"""One write scheduler per bot: every send and edit in a channel shares Discord's per-channel budget.

Discord allows about 5 message writes (sends and edits together) per 5 seconds in one channel and answers
the sixth with a 429; discord.py also waits on its own once a response says no writes remain. Concord
never lets it come to that: all writes to a channel (streamed chat replies, other cogs' progress embeds)
go through this scheduler, which keeps at most `limit` writes in any `window` seconds (fewer than Discord
allows, over a longer window, so network jitter cannot push a burst over). Interim edits are coalesced
(only the latest text of a message is worth sending), paced at most one per `window / limit` seconds,
and may not use the last `reserve` slots, so a new message appears promptly and the write that finishes
a reply goes out at once even while other messages share the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


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
    future: asyncio.Future[Any]
    submitted_at: float

    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass(eq=False)
class _Channel:
    pending: list[_Write] = field(default_factory=list)
    started: deque[float] = field(default_factory=deque)
    last_progress: float = float("-inf")
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


@dataclass
class WriteStats:
    """What the scheduler did, for logs, benchmarks and tests."""

    writes: int = 0
    coalesced: int = 0
    max_wait: float = 0.0
    max_final_wait: float = 0.0


class ChannelWriteBudget:
    """Schedules the bot's message writes per channel under a shared budget.

    `submit()` queues one write (a coroutine factory that performs the HTTP call) and returns a future
    with its result. Writes with the same `key` that are still waiting are coalesced: the newest
    replaces the older one, and both futures get the newest one's result.
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
        self._seq = itertools.count()
        self.stats = WriteStats()

    def submit(
        self,
        channel_id: int,
        op: Callable[[], Awaitable[T]],
        *,
        priority: Priority = Priority.NORMAL,
        key: Hashable | None = None,
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
        channel.pending.append(_Write(op, priority, next(self._seq), key, future, self._clock()))
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
    ) -> T:
        """Submit and wait for the result."""
        return await self.submit(channel_id, op, priority=priority, key=key)

    @property
    def progress_spacing(self) -> float:
        """Least time between two interim edits in one channel: the budget spread evenly."""
        return self.window / self.limit

    def capacity(self, priority: Priority) -> int:
        return self.limit if priority == Priority.FINAL else self.limit - self.reserve

    def recent_writes(self, channel_id: int) -> int:
        """Writes started in the last `window` seconds in this channel."""
        channel = self._channels.get(channel_id)
        if channel is None:
            return 0
        self._expire(channel, self._clock())
        return len(channel.started)

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

    def _expire(self, channel: _Channel, now: float) -> None:
        while channel.started and channel.started[0] <= now - self.window:
            channel.started.popleft()

    def _forget_idle_channels(self) -> None:
        if len(self._channels) < 512:
            return
        now = self._clock()
        for channel_id, channel in list(self._channels.items()):
            self._expire(channel, now)
            if not channel.pending and not channel.started:
                del self._channels[channel_id]

    async def _run(self, channel: _Channel) -> None:
        while channel.pending:
            channel.wake.clear()
            now = self._clock()
            self._expire(channel, now)
            item = min(channel.pending, key=_Write.order)
            capacity = self.capacity(item.priority)
            if len(channel.started) >= capacity:
                # The slot frees when enough of the recent writes leave the window.
                free_at = channel.started[len(channel.started) - capacity] + self.window
                await self._wait(channel, free_at - now)
                continue
            if item.priority == Priority.PROGRESS and now < channel.last_progress + self.progress_spacing:
                # Interim edits are paced, never bursted: a burst of them would use up the window and
                # leave a reply's first message (or another cog's) waiting for seconds.
                await self._wait(channel, channel.last_progress + self.progress_spacing - now)
                continue
            if item.priority == Priority.PROGRESS:
                channel.last_progress = now
            channel.pending.remove(item)
            if item.future.cancelled():
                continue
            channel.started.append(now)
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
