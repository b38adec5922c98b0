"""A short-lived in-process copy of rarely changed rows (guild settings, channel switches, operator grants).

A chat turn needs a guild's settings and the caller's plan; reading them on every turn was most of a turn's
database round trips. Entries live `ttl` seconds. Every write through this process's services calls
`invalidate()` after its commit, so this process sees its own changes at once; another process sharing the
database (several shards on PostgreSQL) sees them within `ttl` seconds (CONFIG_CACHE_SECONDS). A ttl of 0
caches nothing.

A read that started before an invalidation is not stored (the generation moved on meanwhile), and
concurrent misses of one key share a single read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 20_000


class ConfigCache:
    def __init__(self, ttl: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.generation = 0
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}

    def invalidate(self) -> None:
        """Forget everything (called after a committed write of any cached row)."""
        self.generation += 1
        self._entries.clear()
        self._loading.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value of `key`, or `load()`'s answer (shared by concurrent callers, kept `ttl` s)."""
        if self.ttl <= 0:
            return await load()
        found = self._entries.get(key)
        if found is not None and found[0] > self.clock():
            value: T = found[1]
            return value
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, load, self.generation))
            self._loading[key] = loading
        return await asyncio.shield(loading)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[T]], generation: int) -> T:
        try:
            value = await load()
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
        if generation == self.generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (self.clock() + self.ttl, value)
        return value
