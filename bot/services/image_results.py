"""Stored image results: the settings a result's buttons repeat (or a /vision question its Retry button asks
again), found again by a short id after restarts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ConcordError
from bot.services.image_options import ImageSettings
from bot.services.vision import VisionAsk
from bot.store.models import ImageResult

GONE = "That image's settings are no longer stored, so this button can't repeat it."
VISION_GONE = "That question is no longer stored, so this button can't ask it again."


class ResultGone(ConcordError):
    """The row behind a button was deleted."""


@dataclass(frozen=True)
class StoredResult:
    id: int
    owner_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    settings: ImageSettings
    provider: str | None


class ImageResultStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, settings: ImageSettings, *, owner_id: int, guild_id: int | None, channel_id: int | None
    ) -> int:
        async with self._sessions() as session, session.begin():
            row = ImageResult(
                owner_id=owner_id, guild_id=guild_id, channel_id=channel_id, settings=settings.to_json()
            )
            session.add(row)
            await session.flush()
            return row.id

    async def get(self, result_id: int) -> StoredResult:
        async with self._sessions() as session:
            row = await session.get(ImageResult, result_id)
        if row is None:
            raise ResultGone(GONE)
        try:
            settings = ImageSettings.from_json(row.settings)
        except (KeyError, TypeError, ValueError):
            raise ResultGone(GONE) from None  # a stored vision question, not an image's settings
        return StoredResult(
            id=row.id,
            owner_id=row.owner_id,
            guild_id=row.guild_id,
            channel_id=row.channel_id,
            message_id=row.message_id,
            settings=settings,
            provider=row.provider,
        )

    async def create_vision(
        self, ask: VisionAsk, *, owner_id: int, guild_id: int | None, channel_id: int | None
    ) -> int:
        """Keep a failed /vision question (same table: a row of JSON named by a short id) for its Retry."""
        async with self._sessions() as session, session.begin():
            row = ImageResult(
                owner_id=owner_id, guild_id=guild_id, channel_id=channel_id, settings=ask.to_json()
            )
            session.add(row)
            await session.flush()
            return row.id

    async def get_vision(self, result_id: int) -> tuple[int, VisionAsk]:
        """The owner and the stored question; ResultGone when the row is gone or holds something else."""
        async with self._sessions() as session:
            row = await session.get(ImageResult, result_id)
        if row is None:
            raise ResultGone(VISION_GONE)
        try:
            return row.owner_id, VisionAsk.from_json(row.settings)
        except ValueError:
            raise ResultGone(VISION_GONE) from None

    async def record(
        self,
        result_id: int,
        *,
        settings: ImageSettings | None = None,
        message_id: int | None = None,
        provider: str | None = None,
    ) -> None:
        values: dict[str, object] = {}
        if settings is not None:
            values["settings"] = settings.to_json()
        if message_id is not None:
            values["message_id"] = message_id
        if provider is not None:
            values["provider"] = provider
        if not values:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(update(ImageResult).where(ImageResult.id == result_id).values(**values))

    async def forget(self, result_id: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(ImageResult).where(ImageResult.id == result_id))
