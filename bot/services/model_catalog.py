"""A cache of the providers' model lists with fuzzy matching, so autocomplete answers instantly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from bot.providers.types import ModelInfo, ModelKind

log = logging.getLogger(__name__)

MAX_CHOICES = 25
RETRY_AFTER_FAILURE = 30.0
Fetch = Callable[[ModelKind], Awaitable[Sequence[ModelInfo]]]


def _subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(char in it for char in needle)


def fuzzy_matches(query: str, names: Iterable[str], limit: int = MAX_CHOICES) -> list[str]:
    """Names ranked: exact, prefix, prefix of a path segment, substring, then letters in order."""
    needle = query.strip().lower()
    if not needle:
        return sorted(names, key=str.lower)[:limit]
    scored: list[tuple[int, int, str]] = []
    for name in names:
        lowered = name.lower()
        if lowered == needle:
            rank = 0
        elif lowered.startswith(needle):
            rank = 1
        elif any(part.startswith(needle) for part in lowered.replace("-", "/").split("/")):
            rank = 2
        elif needle in lowered:
            rank = 3
        elif _subsequence(needle.replace(" ", ""), lowered):
            rank = 4
        else:
            continue
        scored.append((rank, len(name), name))
    scored.sort()
    return [name for _, _, name in scored[:limit]]


class ModelCatalog:
    """Model ids per kind, refreshed in the background; reads never wait on the network.

    Until the first refresh succeeds, `fallback` names (configured models, the default model) answer.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        max_age: float = 600.0,
        fallback: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._fallback = [name for name in dict.fromkeys(fallback) if name]
        self._models: dict[ModelKind, list[ModelInfo]] = {}
        self._fetched_at: dict[ModelKind, float] = {}
        self._refreshing: dict[ModelKind, asyncio.Task[None]] = {}

    def models(self, kind: ModelKind = "chat") -> list[ModelInfo]:
        return list(self._models.get(kind, ()))

    def names(self, kind: ModelKind = "chat") -> list[str]:
        cached = [m.id for m in self._models.get(kind, ())]
        return list(dict.fromkeys([*cached, *self._fallback])) if kind == "chat" else cached

    def matches(self, query: str, kind: ModelKind = "chat") -> list[str]:
        """At most 25 fuzzy matches from the cache, at once; starts a refresh when the cache is stale."""
        self.refresh_soon(kind)
        return fuzzy_matches(query, self.names(kind))

    def is_stale(self, kind: ModelKind) -> bool:
        fetched = self._fetched_at.get(kind)
        return fetched is None or self._clock() - fetched > self._max_age

    def refresh_soon(self, kind: ModelKind = "chat") -> None:
        if not self.is_stale(kind):
            return
        running = self._refreshing.get(kind)
        if running is not None and not running.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next async read will refresh
            return
        self._refreshing[kind] = loop.create_task(self._refresh_quietly(kind))

    async def _refresh_quietly(self, kind: ModelKind) -> None:
        await self.refresh(kind)

    async def refresh(self, kind: ModelKind = "chat") -> list[ModelInfo]:
        try:
            models = list(await self._fetch(kind))
        except Exception as exc:
            # Keep serving what we had; try again on a later read.
            log.warning("Could not refresh the %s model list: %s", kind, exc)
            self._fetched_at[kind] = self._clock() - self._max_age + RETRY_AFTER_FAILURE
            return self.models(kind)
        self._models[kind] = models
        self._fetched_at[kind] = self._clock()
        return models

    def prime(self, kind: ModelKind, models: Sequence[ModelInfo]) -> None:
        """Store a list fetched elsewhere (e.g. by /models)."""
        self._models[kind] = list(models)
        self._fetched_at[kind] = self._clock()

    async def close(self) -> None:
        for task in self._refreshing.values():
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
        self._refreshing.clear()
