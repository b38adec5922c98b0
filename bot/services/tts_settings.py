"""Stored /tts choices: each user's voice and each server's reading mode."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.engine import upsert_insert
from bot.store.models import TtsReading, TtsUserSettings

READING_MAX_CHARS_DEFAULT = 200


@dataclass(frozen=True)
class ReadingMode:
    """Which channel is read aloud in a server, and what is skipped."""

    guild_id: int
    channel_id: int
    announce_speaker: bool = True
    skip_bots: bool = True
    voice_members_only: bool = True
    required_role_id: int | None = None
    max_chars: int = READING_MAX_CHARS_DEFAULT


class TtsSettingsService:
    """Reads and writes the two small /tts tables, one short session per call."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        # Reading mode is looked at for every message in every server; keep it in memory.
        self._reading: dict[int, ReadingMode | None] = {}

    async def user_voice(self, user_id: int) -> str | None:
        async with self.sessions() as session:
            row = await session.get(TtsUserSettings, user_id)
        return row.voice if row is not None else None

    async def set_user_voice(self, user_id: int, voice: str | None) -> None:
        async with self.sessions() as session, session.begin():
            insert = upsert_insert(session)
            await session.execute(
                insert(TtsUserSettings)
                .values(user_id=user_id, voice=voice)
                .on_conflict_do_update(index_elements=["user_id"], set_={"voice": voice})
            )

    async def reading(self, guild_id: int) -> ReadingMode | None:
        if guild_id in self._reading:
            return self._reading[guild_id]
        async with self.sessions() as session:
            row = await session.get(TtsReading, guild_id)
        mode = (
            None
            if row is None
            else ReadingMode(
                guild_id=row.guild_id,
                channel_id=row.channel_id,
                announce_speaker=row.announce_speaker,
                skip_bots=row.skip_bots,
                voice_members_only=row.voice_members_only,
                required_role_id=row.required_role_id,
                max_chars=row.max_chars,
            )
        )
        self._reading[guild_id] = mode
        return mode

    async def set_reading(self, mode: ReadingMode) -> None:
        values = {
            "channel_id": mode.channel_id,
            "announce_speaker": mode.announce_speaker,
            "skip_bots": mode.skip_bots,
            "voice_members_only": mode.voice_members_only,
            "required_role_id": mode.required_role_id,
            "max_chars": mode.max_chars,
        }
        async with self.sessions() as session, session.begin():
            insert = upsert_insert(session)
            await session.execute(
                insert(TtsReading)
                .values(guild_id=mode.guild_id, **values)
                .on_conflict_do_update(index_elements=["guild_id"], set_=values)
            )
        self._reading[mode.guild_id] = mode

    async def clear_reading(self, guild_id: int) -> bool:
        async with self.sessions() as session, session.begin():
            result = await session.execute(delete(TtsReading).where(TtsReading.guild_id == guild_id))
        self._reading[guild_id] = None
        return bool(getattr(result, "rowcount", 0))


def message_content_note(enabled: bool) -> str | None:
    """Why reading mode cannot read, when the bot runs without the Message Content intent (else None)."""
    if enabled:
        return None
    return (
        "Reading mode can't read messages yet: the bot runs without the Message Content intent, so Discord "
        "sends it only messages that mention it. Enable the intent in the developer portal and set "
        "MESSAGE_CONTENT_INTENT=true."
    )
