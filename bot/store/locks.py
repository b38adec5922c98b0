"""Row locks that serialize read-modify-writes of one guild's data across processes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.engine import upsert_insert
from bot.store.models import GuildSettings


async def lock_guild_settings(session: AsyncSession, guild_id: int) -> GuildSettings:
    """The guild's settings row, created if missing and locked until the transaction ends.

    It is the per-guild mutex for every read-modify-write of the guild's settings (JSON columns such as
    capabilities and role plans) and of its API keys' cap. The transaction starts with a write, so SQLite
    takes its database write lock at once (no read-then-upgrade deadlock); PostgreSQL then locks the row
    with FOR UPDATE, and a concurrent change of the same guild waits for this one instead of losing it.
    """
    insert = upsert_insert(session)
    await session.execute(
        insert(GuildSettings).values(guild_id=guild_id).on_conflict_do_nothing(index_elements=["guild_id"])
    )
    row = await session.get(GuildSettings, guild_id, populate_existing=True, with_for_update=True)
    assert row is not None
    return row
