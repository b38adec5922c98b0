"""Turn ordering and the global cap; the model catalog's fuzzy, cache-only autocomplete."""

from __future__ import annotations

import asyncio

import pytest

from bot.providers.types import ModelInfo, ModelKind
from bot.services.model_catalog import ModelCatalog, fuzzy_matches
from bot.services.turn_gate import ChatBusy, TurnGate


async def test_turns_in_one_channel_run_in_arrival_order_one_at_a_time() -> None:
    gate = TurnGate(max_concurrency=10, busy_wait=1)
    log: list[str] = []

    async def turn(name: str) -> None:
        async with gate.turn(1):
            log.append(f"start {name}")
            await asyncio.sleep(0.005)
            log.append(f"end {name}")

    await asyncio.gather(*(turn(n) for n in "abc"))
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert gate.queued(1) == 0


async def test_different_channels_overlap() -> None:
    gate = TurnGate(max_concurrency=10, busy_wait=1)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with gate.turn(1):
            inside.set()
            await release.wait()

    task = asyncio.create_task(first())
    await inside.wait()
    async with gate.turn(2):
        assert gate.active == 2
    release.set()
    await task


async def test_beyond_the_cap_the_user_is_told_the_bot_is_busy() -> None:
    gate = TurnGate(max_concurrency=1, busy_wait=0.01)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.turn(1):
            inside.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await inside.wait()
    with pytest.raises(ChatBusy, match="busy"):
        async with gate.turn(2):
            pass
    release.set()
    await task
    async with gate.turn(2):  # the slot is free again
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
