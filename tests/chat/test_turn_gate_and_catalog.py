"""Turn ordering and the global cap; the model catalog's fuzzy, cache-only autocomplete."""

from __future__ import annotations

import asyncio

import pytest

from bot.providers.types import ModelInfo, ModelKind
from bot.services.model_catalog import ModelCatalog, fuzzy_matches
from bot.services.turn_gate import ChannelQueueFull, ChatBusy, TurnGate


async def test_a_turn_waits_only_for_the_earlier_turn_it_builds_on() -> None:
    gate = TurnGate(max_concurrency=10, busy_wait=1)
    first = gate.enter(1, author_id=7, question_ids=[100])
    other = gate.enter(1, author_id=8)
    same_author = gate.enter(1, author_id=7)
    reply_to_first = gate.enter(1, author_id=9, reply_to=100)
    elsewhere = gate.enter(2, author_id=7)
    assert other.depends_on is None and elsewhere.depends_on is None
    assert same_author.depends_on is first and reply_to_first.depends_on is first
    # Place in line: each first message waits for the previous turn's in the same channel.
    assert other.previous is first and same_author.previous is other and elsewhere.previous is None
    assert gate.queued(1) == 4
    waiting = asyncio.ensure_future(same_author.wait_for_dependency())
    await asyncio.sleep(0)
    assert not waiting.done()
    gate.leave(first)
    await asyncio.wait_for(waiting, 1)
    for ticket in (other, same_author, reply_to_first, elsewhere):
        gate.leave(ticket)
    assert gate.queued(1) == 0 and gate.queued(2) == 0


def test_a_full_channel_refuses_more_questions() -> None:
    gate = TurnGate(max_concurrency=10, busy_wait=1, queue_limit=2)
    gate.enter(1, author_id=1)
    gate.enter(1, author_id=2)
    with pytest.raises(ChannelQueueFull, match="too many questions waiting here"):
        gate.enter(1, author_id=3)
    gate.enter(2, author_id=3)  # other channels have their own line


async def test_beyond_the_cap_the_user_is_told_the_bot_is_busy() -> None:
    gate = TurnGate(max_concurrency=1, busy_wait=0.01)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            inside.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await inside.wait()
    with pytest.raises(ChatBusy, match="busy"):
        async with gate.slot():
            pass
    release.set()
    await task
    async with gate.slot():  # the slot is free again
        assert gate.active == 1


def test_fuzzy_matching_ranks_prefix_then_segment_then_substring() -> None:
    names = ["gpt-4o", "gpt-4o-mini", "openai/gpt-4", "claude-3", "llama-3-70b", "mixtral", "g-p-t"]
    assert fuzzy_matches("gpt", names)[:3] == ["gpt-4o", "gpt-4o-mini", "openai/gpt-4"]
    assert fuzzy_matches("l370", names) == ["llama-3-70b"]
    assert fuzzy_matches("", names) == sorted(names, key=str.lower)
    assert len(fuzzy_matches("", [f"m{i}" for i in range(100)])) == 25


async def test_catalog_answers_from_cache_and_fallback_without_waiting() -> None:
    fetched = asyncio.Event()
    release = asyncio.Event()

    async def fetch(kind: ModelKind) -> list[ModelInfo]:
        fetched.set()
        await release.wait()
        return [ModelInfo(id=f"model-{i}", kind="chat", provider="p") for i in range(40)]

    catalog = ModelCatalog(fetch, fallback=["default-model"])
    assert catalog.matches("def") == ["default-model"]  # cold: the fallback, at once
    await fetched.wait()  # ... and a refresh started in the background
    release.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(catalog.matches("model")) == 25
    assert catalog.matches("model-39") == ["model-39"]
    await catalog.close()


async def test_catalog_keeps_serving_when_a_refresh_fails() -> None:
    calls = 0

    async def fetch(kind: ModelKind) -> list[ModelInfo]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("gateway down")
        return [ModelInfo(id="only", kind="chat", provider="p")]

    now = [0.0]
    catalog = ModelCatalog(fetch, max_age=10, clock=lambda: now[0])
    await catalog.refresh()
    now[0] = 100
    await catalog.refresh()
    assert catalog.names() == ["only"]
    assert not catalog.is_stale("chat")  # a failure waits a while before the next try
