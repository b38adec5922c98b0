"""Group commit: short units of work submitted in the same moment share one connection and one commit.

A chat turn's quota take and its question's insert are submitted together as the turn arrives; run as
one transaction they cost one connection checkout and one COMMIT instead of two of each. Turns arriving
together (a burst) join the same transaction too.

A unit of work is a coroutine function of the connection; it must leave the transaction to the group
(no commit or rollback of its own). If the shared transaction fails, each unit is run again in a
transaction of its own, so one unit's error never becomes another's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]


class GroupCommit:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> asyncio.Future[T]:
        """Queue `work`; it runs with the others submitted in this loop iteration, in submission order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return future

    async def close(self) -> None:
        """At shutdown, before the engine is disposed: the work already submitted runs and commits, so
        no write is lost and no connection is left checked out."""
        while self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await self._flusher

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the units submitted in the same moment join this transaction
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._in_one_transaction([work for work, _ in batch])
            except Exception:
                await self._one_by_one(batch)  # (rolled back) each again alone: an error stays its own
                continue
            except BaseException:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("the database work was stopped"))
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _in_one_transaction(self, works: list[Work]) -> list[Any]:
        async with self.engine.connect() as connection:
            results = [await work(connection) for work in works]
            await connection.commit()
        return results

    async def _one_by_one(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        for work, future in batch:
            try:
                [result] = await self._in_one_transaction([work])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
