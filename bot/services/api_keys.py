"""send-data API keys: created once (shown once), stored as SHA-256 hashes, scoped to one guild, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import InvalidInput
from bot.store.locks import lock_guild_settings
from bot.store.models import ApiKey

KEY_PREFIX = "cnc_"
MAX_ACTIVE_KEYS_PER_GUILD = 10


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    """The only moment the full key exists outside the caller's hands."""

    id: int
    name: str
    key: str
    prefix: str


@dataclass(frozen=True)
class KeyInfo:
    id: int
    guild_id: int
    name: str
    prefix: str
    created_by: int
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(
            id=row.id,
            guild_id=row.guild_id,
            name=row.name,
            prefix=row.key_prefix,
            created_by=row.created_by,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


class ApiKeyService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def create(self, guild_id: int, name: str, created_by: int) -> CreatedKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("Give the key a name of 1 to 100 characters.")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[:12]
        async with self.sessions() as session:
            # The guild's row lock makes count-then-insert one step: concurrent creations cannot both
            # see room for one more key and pass the cap together.
            await lock_guild_settings(session, guild_id)
            active = await session.scalars(
                select(ApiKey.id).where(ApiKey.guild_id == guild_id, ApiKey.revoked_at.is_(None))
            )
            if len(active.all()) >= MAX_ACTIVE_KEYS_PER_GUILD:
                raise InvalidInput(
                    f"This server already has {MAX_ACTIVE_KEYS_PER_GUILD} keys; revoke one first."
                )
            row = ApiKey(
                guild_id=guild_id, name=name, key_prefix=prefix, key_hash=hash_key(key), created_by=created_by
            )
            session.add(row)
            await session.commit()
            return CreatedKey(id=row.id, name=name, key=key, prefix=prefix)

    async def list(self, guild_id: int, *, include_revoked: bool = False) -> list[KeyInfo]:
        async with self.sessions() as session:
            statement = select(ApiKey).where(ApiKey.guild_id == guild_id).order_by(ApiKey.id)
            if not include_revoked:
                statement = statement.where(ApiKey.revoked_at.is_(None))
            return [KeyInfo.of(row) for row in await session.scalars(statement)]

    async def revoke(self, guild_id: int, key_id: int) -> KeyInfo:
        """Revoke one of this guild's keys (a key of another guild is 'not found', never revoked)."""
        async with self.sessions() as session:
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.guild_id == guild_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
                .returning(ApiKey.id)
            )
            if result.scalar_one_or_none() is None:
                raise InvalidInput(f"This server has no active key with id {key_id}.")
            await session.commit()
            row = await session.get(ApiKey, key_id)
            assert row is not None
            return KeyInfo.of(row)

    async def authenticate(self, key: str) -> KeyInfo | None:
        """The active key this secret belongs to, or None; marks it used."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        async with self.sessions() as session:
            row = await session.scalar(
                select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
            )
            if row is None:
                return None
            await session.execute(
                update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=datetime.now(UTC))
            )
            await session.commit()
            return KeyInfo.of(row)
