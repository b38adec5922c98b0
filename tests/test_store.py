"""The store on a real SQLite file: pragmas, conversations, cascades and the recent-messages index."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.store.models import ApiKey, Conversation, ConversationMessage, GuildSettings, Job


async def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 5000


async def test_last_messages_of_a_channel_use_the_index(
    db_engine: AsyncEngine, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with db_sessions.begin() as session:
        first = Conversation(channel_id=111, guild_id=1)
        other = Conversation(channel_id=222, guild_id=None)  # a DM
        session.add_all([first, other])
        await session.flush()
        for i in range(30):
            session.add(
                ConversationMessage(conversation_id=first.id, role="user", content=f"m{i}", author_id=5)
            )
        session.add(ConversationMessage(conversation_id=other.id, role="user", content="dm", author_id=5))

    recent = (
        select(ConversationMessage.content)
        .join(Conversation)
        .where(Conversation.channel_id == 111)
        .order_by(ConversationMessage.id.desc())
        .limit(5)
    )
    async with db_sessions() as session:
        assert list(await session.scalars(recent)) == ["m29", "m28", "m27", "m26", "m25"]

    async with db_engine.connect() as connection:
        plan = (
            await connection.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM conversation_messages "
                    "WHERE conversation_id = 1 ORDER BY id DESC LIMIT 5"
                )
            )
        ).all()
    assert any("ix_conversation_messages_recent" in str(row) for row in plan), plan


async def test_deleting_a_conversation_deletes_its_messages(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessions.begin() as session:
        conversation = Conversation(channel_id=333)
        conversation.messages.append(
            ConversationMessage(role="user", content="hello", discord_message_ids=[9])
        )
        session.add(conversation)
    async with db_sessions.begin() as session:
        await session.execute(text("DELETE FROM conversations WHERE channel_id = 333"))
    async with db_sessions() as session:
        assert (await session.scalars(select(ConversationMessage))).all() == []


async def test_json_columns_and_defaults_round_trip(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessions.begin() as session:
        session.add(GuildSettings(guild_id=10, role_plans={"55": "premium"}, disabled_capabilities=["tts"]))
        session.add(Job(id="job-1", kind="suno", user_id=1, channel_id=2, request={"prompt": "song"}))
        session.add(ApiKey(guild_id=10, name="ci", key_prefix="cc_abcd", key_hash="0" * 64, created_by=1))
    async with db_sessions() as session:
        guild = await session.get(GuildSettings, 10)
        job = await session.get(Job, "job-1")
    assert guild is not None and guild.role_plans == {"55": "premium"}
    assert guild.disabled_capabilities == ["tts"]
    assert guild.chat_all_channels is True  # a fresh server answers mentions everywhere
    assert job is not None and job.status == "pending" and job.request == {"prompt": "song"}
