"""The in-memory tails of recent conversations: contexts built from them equal contexts read from the
database, through every kind of write, with reads and writes interleaved, and past the tail's bounds."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.conversation_tails import ROW_COST, TAIL_ROWS, TAILS_MEMORY, ConversationTails
from bot.services.conversations import ConversationStore, Turn

CHANNELS = (1000, 1001, 1002)
GUILD = 10


@contextlib.contextmanager
def statements(store: ConversationStore) -> Iterator[list[str]]:
    """Every statement the store's engine sends inside the block."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def question(text: str) -> Turn:
    return Turn(role="user", content=text, author_id=5, author_name="bob")


async def truth(
    sessions: async_sessionmaker[AsyncSession], channel: int, room: int, **kw: object
) -> list[Turn]:
    """The context as a store with nothing in memory reads it from the database."""
    return await ConversationStore(sessions).recent(channel, room, "chars", **kw)  # type: ignore[arg-type]


async def test_a_second_context_is_built_without_a_statement(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ConversationStore(db_sessions)
    await store.append(CHANNELS[0], GUILD, [question("hi"), Turn(role="assistant", content="hello")])
    first = await store.recent(CHANNELS[0], 1000, "chars")
    with statements(store) as seen:
        second = await store.recent(CHANNELS[0], 1000, "chars")
        ids = await store.begin_turn(CHANNELS[0], GUILD, question("again"))
        await store.replace_reply(ids[1], content="sure", model="m", incomplete=False, message_ids=[7])
        third = await store.recent(CHANNELS[0], 1000, "chars")
    assert second == first and [t.content for t in first] == ["hi", "hello"]
    assert [t.content for t in third] == ["hi", "hello", "again", "sure"]
    assert third[-1].message_ids == (7,)
    assert not any(s.lstrip().upper().startswith("SELECT") for s in seen), seen  # writes only
    assert third == await truth(db_sessions, CHANNELS[0], 1000)


async def test_every_kind_of_write_keeps_contexts_equal_to_the_database(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ConversationStore(db_sessions)
    rng = random.Random(14)
    turns: dict[int, list[list[int]]] = {c: [] for c in CHANNELS}
    for step in range(160):
        channel = rng.choice(CHANNELS)
        action = rng.random()
        if action < 0.45:
            ids = await store.begin_turn(channel, GUILD, question(f"q{step} " + "x" * rng.randrange(40)))
            turns[channel].append(ids)
        elif action < 0.75 and turns[channel]:
            ids = rng.choice(turns[channel])
            await store.replace_reply(
                ids[1],
                content=f"a{step} " + "y" * rng.randrange(60),
                model="m",
                incomplete=rng.random() < 0.2,
                message_ids=[step],
            )
        elif action < 0.85 and turns[channel]:
            ids = turns[channel].pop(rng.randrange(len(turns[channel])))
            await store.drop_turn(ids)
        elif action < 0.9:
            await store.reset(channel)
            turns[channel] = []
        else:
            await store.append(
                channel, GUILD, [question(f"p{step}"), Turn(role="assistant", content=f"r{step}")]
            )
        room = rng.choice((30, 200, 5000))
        exclude = {i for ids in rng.sample(turns[channel], min(2, len(turns[channel]))) for i in ids}
        got = await store.recent(channel, room, "chars", exclude=exclude)
        assert got == await truth(db_sessions, channel, room, exclude=exclude), f"step {step}"
        assert store.tails.cost == sum(tail.cost() for tail in store.tails._tails.values()), f"step {step}"


async def test_a_read_overtaken_by_a_write_keeps_nothing_stale(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ConversationStore(db_sessions)
    ids = await store.begin_turn(CHANNELS[0], GUILD, question("what?"))
    await store.replace_reply(ids[1], content="first answer", model="m", incomplete=False, message_ids=[])
    fresh = ConversationStore(db_sessions)  # nothing in memory: its first read goes to the database
    await fresh.recent(CHANNELS[1], 100, "chars")  # (it knows no conversation of CHANNELS[0] yet)
    reading = asyncio.ensure_future(fresh.recent(CHANNELS[0], 1000, "chars"))
    await asyncio.sleep(0)  # the read is under way
    await fresh.replace_reply(ids[1], content="second answer", model="m", incomplete=False, message_ids=[])
    await reading
    latest = await fresh.recent(CHANNELS[0], 1000, "chars")
    assert [t.content for t in latest] == ["what?", "second answer"]


async def test_a_context_longer_than_the_tail_is_read_past_it(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = ConversationStore(db_sessions)
    exchanges = [[question(f"q{i}"), Turn(role="assistant", content=f"a{i}")] for i in range(TAIL_ROWS)]
    await store.append(CHANNELS[0], GUILD, [turn for pair in exchanges for turn in pair])  # twice the tail
    small = await store.recent(CHANNELS[0], 30, "chars")  # one exchange; the read fills the tail
    everything = await store.recent(CHANNELS[0], 1_000_000, "chars")
    assert small == await truth(db_sessions, CHANNELS[0], 30)
    assert [t.content for t in small] == [f"q{TAIL_ROWS - 1}", f"a{TAIL_ROWS - 1}"]
    assert len(everything) == 2 * TAIL_ROWS
    assert everything == await truth(db_sessions, CHANNELS[0], 1_000_000)


def row(row_id: int, content: str) -> Turn:
    return Turn(role="assistant", content=content, model="m", id=row_id)


def test_rows_read_while_the_channel_was_written_are_not_kept() -> None:
    tails: ConversationTails[Turn] = ConversationTails()
    tails.place(7, CHANNELS[0])
    mark = tails.start_read(CHANNELS[0])
    tails.updated(7, row(1, "new"))  # the write lands while the read is under way
    tails.end_read(CHANNELS[0], mark, [row(1, "old")], whole=True)
    assert tails.newest_first(CHANNELS[0]) is None
    # A write to a conversation this process cannot place spoils every read under way.
    mark = tails.start_read(CHANNELS[0])
    tails.updated(99, row(5, "elsewhere?"))
    tails.end_read(CHANNELS[0], mark, [row(1, "new")], whole=True)
    assert tails.newest_first(CHANNELS[0]) is None
    # A read no write overtook is kept, and later writes keep it in step.
    mark = tails.start_read(CHANNELS[0])
    tails.end_read(CHANNELS[0], mark, [row(1, "new")], whole=True)
    tails.inserted(CHANNELS[0], [row(2, "next"), row(1, "duplicate of a kept row")])
    kept = tails.newest_first(CHANNELS[0])
    assert kept is not None
    rows, whole, below = kept
    assert [r.content for r in rows] == ["next", "new"] and whole and below == 1


def test_all_tails_together_stay_under_their_memory_cap() -> None:
    tails: ConversationTails[Turn] = ConversationTails()
    text = "z" * 60_000  # about a channel's whole text allowance in one row
    channels = range(1, 1 + 2 * TAILS_MEMORY // (len(text) + ROW_COST))
    for channel in channels:
        mark = tails.start_read(channel)
        tails.end_read(channel, mark, [row(channel * 10, text)], whole=True)
        assert tails.cost <= TAILS_MEMORY
    assert tails.newest_first(channels[-1]) is not None  # the most recent are kept
    assert tails.newest_first(channels[0]) is None  # the least recent went first
