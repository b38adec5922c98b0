"""The send-data audit log: one row per post, accepted or refused, from the endpoint or `/embed send`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.models import SendDataAudit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendRecord:
    id: int
    source: str
    api_key_id: int | None
    actor_id: int | None
    guild_id: int | None
    channel_id: int | None
    status: int
    detail: str | None
    message_id: int | None
    created_at: datetime


class SendAuditLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

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
        async with self.sessions() as session:
            session.add(
                SendDataAudit(
                    source=source,
                    status=status,
                    detail=(detail or "")[:1000] or None,
                    api_key_id=api_key_id,
                    actor_id=actor_id,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    message_id=message_id,
                    remote=(remote or "")[:64] or None,
                )
            )
            await session.commit()

    async def recent(self, *, guild_id: int | None = None, limit: int = 50) -> list[SendRecord]:
        async with self.sessions() as session:
            statement = select(SendDataAudit).order_by(SendDataAudit.id.desc()).limit(limit)
            if guild_id is not None:
                statement = statement.where(SendDataAudit.guild_id == guild_id)
            return [
                SendRecord(
                    r.id,
                    r.source,
                    r.api_key_id,
                    r.actor_id,
                    r.guild_id,
                    r.channel_id,
                    r.status,
                    r.detail,
                    r.message_id,
                    r.created_at,
                )
                for r in await session.scalars(statement)
            ]
