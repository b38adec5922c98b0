"""The send-data audit log: accepted posts one row each, refused ones aggregated per sender and minute.

A flood of refused posts (bad keys, a script in a loop) must not become a flood of rows: refusals are
counted in one row per key, admin or client address per minute. Refusals the HTTP endpoint turns away
before any database work are counted in memory and written by the maintenance task, which also prunes
rows older than AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.engine import upsert_insert
from bot.store.models import SendDataAudit

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 10.0
PRUNE_INTERVAL = 3600.0


def refusal_key(api_key_id: int | None, actor_id: int | None, remote: str | None) -> str:
    """Who a refused post is counted against: its key, else the admin, else the client address."""
    if api_key_id is not None:
        return f"key:{api_key_id}"
    if actor_id is not None:
        return f"user:{actor_id}"
    return f"addr:{(remote or 'unknown')[:64]}"


class SendAuditLog:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        # (refusal key, minute) -> [count, status, detail, source]: refusals not yet written.
        self._pending: dict[tuple[str, int], list[Any]] = {}
        self._task: asyncio.Task[None] | None = None

    async def record(
        self,
        *,
        source: str,
        status: int,
        detail: str | None = None,
        api_key_id: int | None = None,
        actor_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        message_id: int | None = None,
        remote: str | None = None,
    ) -> None:
        """One row for an accepted post; a refused one is added to its sender's row of this minute."""
        values: dict[str, Any] = {
            "source": source,
            "status": status,
            "detail": (detail or "")[:1000] or None,
            "api_key_id": api_key_id,
            "actor_id": actor_id,
            "guild_id": guild_id,
            "channel_id": channel_id,
            "message_id": message_id,
            "remote": (remote or "")[:64] or None,
            "created_at": datetime.fromtimestamp(self.clock(), UTC),
        }
        async with self.sessions() as session:
            if status < 300:
                session.add(SendDataAudit(**values))
            else:
                values.update(refusal_key=refusal_key(api_key_id, actor_id, remote), minute=self._minute())
                await session.execute(self._aggregate(session, values, 1))
            await session.commit()

    def note_refused(self, *, remote: str | None, status: int, detail: str) -> None:
        """Count a refusal in memory only (the endpoint turned it away before any database work)."""
        key = (refusal_key(None, None, remote), self._minute())
        entry = self._pending.setdefault(key, [0, status, detail, remote])
        entry[0] += 1
        entry[1], entry[2] = status, detail

    async def flush(self) -> None:
        """Write the refusals counted in memory, one aggregated row per address and minute."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        async with self.sessions() as session:
            for (key, minute), (count, status, detail, remote) in pending.items():
                values = {
                    "source": "http",
                    "status": status,
                    "detail": detail[:1000],
                    "remote": (remote or "")[:64] or None,
                    "refusal_key": key,
                    "minute": minute,
                    "created_at": datetime.fromtimestamp(minute * 60, UTC),
                }
                await session.execute(self._aggregate(session, values, count))
            await session.commit()

    def _minute(self) -> int:
        return int(self.clock() // 60)

    @staticmethod
    def _aggregate(session: AsyncSession, values: dict[str, Any], count: int) -> Any:
        insert = upsert_insert(session)
        statement = insert(SendDataAudit).values(**values, count=count)
        return statement.on_conflict_do_update(
            index_elements=["refusal_key", "minute"],
            set_={
                "count": SendDataAudit.count + count,
                "status": statement.excluded.status,
                "detail": statement.excluded.detail,
                "channel_id": statement.excluded.channel_id,
            },
        )

    async def prune(self, retention_days: int) -> int:
        """Delete rows older than `retention_days`."""
        cutoff = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=retention_days)
        async with self.sessions() as session:
            result = await session.execute(delete(SendDataAudit).where(SendDataAudit.created_at < cutoff))
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    # --- the maintenance task, owned by the bot (started in setup_hook, stopped in close) ---------

    def start(self, retention_days: int, *, flush_every: float = FLUSH_INTERVAL) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._maintain(retention_days, flush_every), name="send-audit")

    async def _maintain(self, retention_days: int, flush_every: float) -> None:
        last_prune = float("-inf")
        while True:
            # Sleep first: a short-lived process is not cancelled in the middle of a statement.
            await asyncio.sleep(flush_every)
            try:
                await self.flush()
                if time.monotonic() - last_prune >= PRUNE_INTERVAL:
                    last_prune = time.monotonic()
                    removed = await self.prune(retention_days)
                    if removed:
                        log.info("Pruned %d send-data audit rows older than %d days", removed, retention_days)
            except Exception:
                log.exception("send-data audit maintenance failed; retrying later")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("Could not write the last send-data refusal counts")
