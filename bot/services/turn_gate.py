"""Chat turn scheduling: one turn at a time per channel, in arrival order, under a global concurrency cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.errors import ConcordError


class ChatBusy(ConcordError):
    """Every generation slot stayed taken for longer than the configured wait."""

    def __init__(self) -> None:
        super().__init__("I'm busy answering other people right now; please try again in a moment.")


class TurnGate:
    """`async with gate.turn(channel_id):` waits for the channel's earlier turns (FIFO), then for one of
    `max_concurrency` global slots; if no slot frees within `busy_wait` seconds it raises ChatBusy."""

    def __init__(self, max_concurrency: int, busy_wait: float) -> None:
        self.max_concurrency = max_concurrency
        self.busy_wait = busy_wait
        self._slots = asyncio.Semaphore(max_concurrency)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}
        self.active = 0

    def queued(self, channel_id: int) -> int:
        """Turns in this channel that are running or waiting."""
        return self._users.get(channel_id, 0)

    @asynccontextmanager
    async def turn(self, channel_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        self._users[channel_id] = self._users.get(channel_id, 0) + 1
        try:
            async with lock:
                try:
                    async with asyncio.timeout(self.busy_wait):
                        await self._slots.acquire()
                except TimeoutError:
                    raise ChatBusy() from None
                self.active += 1
                try:
                    yield
                finally:
                    self.active -= 1
                    self._slots.release()
        finally:
            self._users[channel_id] -= 1
            if not self._users[channel_id]:
                del self._users[channel_id]
                self._locks.pop(channel_id, None)
