"""Chat turn scheduling: each channel's turns keep their arrival order on screen, run concurrently unless one
depends on another, and share a bot-wide cap on provider calls."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.errors import ConcordError


class ChatBusy(ConcordError):
    """Every generation slot stayed taken for longer than the configured wait."""

    def __init__(self) -> None:
        super().__init__("I'm busy answering other people right now; please try again in a moment.")


class ChannelQueueFull(ConcordError):
    """A channel already has as many questions waiting as the bot takes."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"There are too many questions waiting here ({limit}); ask again once I've answered some."
        )


@dataclass(eq=False)
class Ticket:
    """One turn's place in its channel's line, taken synchronously when its event arrives."""

    channel_id: int
    author_id: int
    seq: int
    previous: Ticket | None
    """The turn before this one in the channel: this turn's first message waits for that one's."""
    depends_on: Ticket | None
    """An earlier unfinished turn this one builds on (same author, or a reply to it): waited for whole."""
    question_ids: set[int] = field(default_factory=set)
    answer_ids: set[int] = field(default_factory=set)
    row_ids: tuple[int, ...] = ()
    """The stored rows (question, answer) of this turn while it is in flight."""
    answered: bool = False
    """Its answer is stored (so a later failure must not drop its rows)."""
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    posted: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_to_store(self) -> None:
        """Rows are stored in question order: wait until the previous turn stored its question (or left)."""
        if self.previous is not None:
            await self.previous.stored.wait()

    async def wait_to_post(self) -> None:
        """A reply's first message appears after the previous turn's first message (or its end)."""
        if self.previous is not None:
            await self.previous.posted.wait()

    async def wait_for_dependency(self) -> None:
        if self.depends_on is not None:
            await self.depends_on.finished.wait()


class TurnGate:
    """Lines per channel and `max_concurrency` provider slots for the whole bot.

    `enter()` is synchronous so a turn's place is fixed by event order, before any await. `slot()` waits
    at most `busy_wait` seconds for a provider slot, then raises ChatBusy. `leave()` ends a turn."""

    def __init__(self, max_concurrency: int, busy_wait: float, queue_limit: int = 10) -> None:
        self.max_concurrency = max_concurrency
        self.busy_wait = busy_wait
        self.queue_limit = queue_limit
        self._slots = asyncio.Semaphore(max_concurrency)
        self._lines: dict[int, list[Ticket]] = {}
        self._seq = itertools.count()
        self.active = 0
        self.closed = False

    def queued(self, channel_id: int) -> int:
        """Turns in this channel that are running or waiting."""
        return len(self._lines.get(channel_id, ()))

    def in_flight(self) -> list[Ticket]:
        return [ticket for line in self._lines.values() for ticket in line]

    def enter(
        self,
        channel_id: int,
        author_id: int,
        *,
        question_ids: Iterable[int] = (),
        reply_to: int | None = None,
    ) -> Ticket:
        line = self._lines.setdefault(channel_id, [])
        if len(line) >= self.queue_limit:
            raise ChannelQueueFull(self.queue_limit)
        depends_on = None
        for earlier in reversed(line):
            if earlier.author_id == author_id or (
                reply_to is not None and (reply_to in earlier.question_ids or reply_to in earlier.answer_ids)
            ):
                depends_on = earlier
                break
        ticket = Ticket(
            channel_id=channel_id,
            author_id=author_id,
            seq=next(self._seq),
            previous=line[-1] if line else None,
            depends_on=depends_on,
            question_ids=set(question_ids),
        )
        line.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """The turn is over (answered, failed or refused): release everything that waits on it."""
        ticket.stored.set()
        ticket.posted.set()
        ticket.finished.set()
        line = self._lines.get(ticket.channel_id)
        if line is not None and ticket in line:
            line.remove(ticket)
            if not line:
                del self._lines[ticket.channel_id]

    def excluded_rows(self, channel_id: int, keep: Ticket | None = None) -> set[int]:
        """Stored rows of the channel's unfinished turns (not part of anyone's context), except `keep`'s."""
        rows: set[int] = set()
        for ticket in self._lines.get(channel_id, ()):
            if ticket is not keep:
                rows.update(ticket.row_ids)
        return rows

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the bot-wide provider slots, or ChatBusy after `busy_wait` seconds."""
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
