"""The newest stored rows of recently active channels, kept in memory so a turn's context needs no read.

A tail is a contiguous run of a channel's newest `conversation_messages` rows (as the store's Turns, so
a context reuses them as they are), in id order: every stored
row of that channel with an id at or above the tail's first one is in it. The store keeps it in step with
its own writes (insert, reply update, drop, reset) once they commit. Only this process writes a channel's
conversation: Discord sends a channel's events to one shard, and each process runs its own shards.

A tail is installed from a database read only when no write to that channel happened while the read was
under way (each write bumps the channel's write count), so a read never installs rows older than a write
it did not see.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

TAIL_ROWS = 1024
"""Rows kept per channel (the oldest are dropped first): more than a context of the default history
budget can use (3,000 tokens at 5 or more a row is at most 600 rows), so a busy channel of short messages
is not read again on every turn."""
TAIL_CHARS = 64 * 1024
"""Text kept per channel; a context needing more is read from the database."""
TAIL_CHANNELS = 512
"""Channels kept; the least recently used is dropped first."""
ROW_COST = 512
"""What keeping a row costs besides its text, in bytes (the Turn and its fields), for `TAILS_MEMORY`."""
TAILS_MEMORY = 32 * 1024 * 1024
"""Bytes all tails may take (text + `ROW_COST` a row); the least recently used channels go first."""


class Stored(Protocol):
    """A stored message as the store hands it out (its Turn): only its id and text matter here."""

    @property
    def id(self) -> int | None: ...

    @property
    def content(self) -> str: ...


S = TypeVar("S", bound=Stored)


def _id(item: Stored) -> int:
    assert item.id is not None
    return item.id


@dataclass(slots=True)
class _Tail(Generic[S]):
    rows: list[S] = field(default_factory=list)
    whole: bool = False
    """No older rows exist: the tail is the channel's whole conversation."""
    chars: int = 0

    def cost(self) -> int:
        return self.chars + ROW_COST * len(self.rows)

    def trim(self) -> None:
        while self.rows and (len(self.rows) > TAIL_ROWS or self.chars > TAIL_CHARS):
            self.chars -= len(self.rows.pop(0).content)
            self.whole = False


class ConversationTails(Generic[S]):
    """Per-channel tails, least recently used dropped first; the store calls every method."""

    def __init__(self) -> None:
        self._tails: OrderedDict[int, _Tail[S]] = OrderedDict()
        self.cost = 0
        """What the tails take, in bytes (each tail's `cost`), kept under TAILS_MEMORY."""
        self._readers: dict[int, int] = {}
        """Channels with database reads under way (how many): only their writes are counted."""
        self._writes: dict[int, int] = {}
        self._unplaced_writes = 0
        """Writes to rows whose channel this process did not know: any read under way may be stale."""
        self.channel_of_conversation: dict[int, int] = {}

    # --- reading ------------------------------------------------------------------------------------

    def newest_first(self, channel_id: int) -> tuple[Iterator[S], bool, int | None] | None:
        """The channel's tail newest first, whether it is the whole conversation, and the id the database
        read continues below; None when the channel has no tail."""
        tail = self._tails.get(channel_id)
        if tail is None:
            return None
        self._tails.move_to_end(channel_id)
        below = _id(tail.rows[0]) if tail.rows else None
        return reversed(list(tail.rows)), tail.whole, below

    def start_read(self, channel_id: int) -> tuple[int, int]:
        """Before a database read of the channel's newest rows; pass the mark to `end_read` (always)."""
        self._readers[channel_id] = self._readers.get(channel_id, 0) + 1
        return self._writes.get(channel_id, 0), self._unplaced_writes

    def end_read(
        self, channel_id: int, mark: tuple[int, int], newest_first: Sequence[S] | None, whole: bool
    ) -> None:
        """After the read: keep the rows it got (the channel's newest, contiguous; None: nothing to keep)
        as the channel's tail, unless a write to the channel came while it was under way."""
        overtaken = mark != (self._writes.get(channel_id, 0), self._unplaced_writes)
        readers = self._readers.pop(channel_id, 1) - 1
        if readers:
            self._readers[channel_id] = readers
        else:
            self._writes.pop(channel_id, None)
        if not self._readers:
            self._unplaced_writes = 0
        if newest_first is None or overtaken or channel_id in self._tails:
            return
        tail = _Tail(rows=list(reversed(newest_first)), whole=whole)
        tail.chars = sum(len(row.content) for row in tail.rows)
        tail.trim()
        self._tails[channel_id] = tail
        self.cost += tail.cost()
        self._evict()

    def _evict(self) -> None:
        while len(self._tails) > TAIL_CHANNELS or (self.cost > TAILS_MEMORY and len(self._tails) > 1):
            _, tail = self._tails.popitem(last=False)
            self.cost -= tail.cost()

    # --- keeping in step with the store's writes ------------------------------------------------------

    def _wrote(self, channel_id: int) -> _Tail[S] | None:
        if channel_id in self._readers:
            self._writes[channel_id] = self._writes.get(channel_id, 0) + 1
        return self._tails.get(channel_id)

    def _channel(self, conversation_id: int) -> int | None:
        channel_id = self.channel_of_conversation.get(conversation_id)
        if channel_id is None and self._readers:
            self._unplaced_writes += 1
        return channel_id

    def place(self, conversation_id: int, channel_id: int) -> None:
        """Which channel a conversation row belongs to (a conversation row is never deleted)."""
        if len(self.channel_of_conversation) > 100_000:
            self.channel_of_conversation.clear()
        self.channel_of_conversation[conversation_id] = channel_id

    def inserted(self, channel_id: int, rows: Sequence[S]) -> None:
        """New rows of the channel, in id order (each newer than any stored before)."""
        tail = self._wrote(channel_id)
        if tail is None:
            return
        before = tail.cost()
        newest = _id(tail.rows[-1]) if tail.rows else None
        for row in rows:
            if newest is None or _id(row) > newest:
                tail.rows.append(row)
                tail.chars += len(row.content)
        tail.trim()
        self.cost += tail.cost() - before
        self._evict()

    def updated(self, conversation_id: int, row: S) -> None:
        """A stored row's new values (same id)."""
        channel_id = self._channel(conversation_id)
        tail = self._wrote(channel_id) if channel_id is not None else None
        if tail is None:
            return
        before = tail.cost()
        for index in range(len(tail.rows) - 1, -1, -1):  # usually the newest: a reply just finished
            old = tail.rows[index]
            if old.id == row.id:
                tail.rows[index] = row
                tail.chars += len(row.content) - len(old.content)
                tail.trim()
                break
        self.cost += tail.cost() - before
        self._evict()

    def deleted(self, conversation_ids: Sequence[int], row_ids: Sequence[int]) -> None:
        gone = set(row_ids)
        for conversation_id in set(conversation_ids):
            channel_id = self._channel(conversation_id)
            tail = self._wrote(channel_id) if channel_id is not None else None
            if tail is not None:
                before = tail.cost()
                tail.rows = [row for row in tail.rows if row.id not in gone]
                tail.chars = sum(len(row.content) for row in tail.rows)
                self.cost += tail.cost() - before

    def reset(self, channel_id: int) -> None:
        """The channel's conversation is now empty."""
        self._wrote(channel_id)
        old = self._tails.get(channel_id)
        if old is not None:
            self.cost -= old.cost()
        self._tails[channel_id] = _Tail(whole=True)
        self._tails.move_to_end(channel_id)
        self._evict()
