"""Migrations: upgrade on an empty database matches the models; downgrade removes everything."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from bot.store.engine import create_engine
from bot.store.migrate import current_revision, downgrade, head_revision, upgrade
from bot.store.models import Base

EXPECTED_TABLES = {
    "guild_settings",
    "channel_settings",
    "conversations",
    "conversation_messages",
    "quota_usage",
    "jobs",
    "api_keys",
    "config_audit",
    "tts_user_settings",
    "tts_reading",
    "send_data_audit",
    "image_results",
}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _schema_drift(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_upgrade_on_empty_database_matches_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == EXPECTED_TABLES
            assert await connection.run_sync(_schema_drift) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        await downgrade(engine, "base")
        assert await current_revision(engine) is None
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_migrations_on_postgresql(postgres_url: str) -> None:
    """DATABASE_URL alone switches to PostgreSQL: same migrations, no schema drift, clean downgrade."""
    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == EXPECTED_TABLES
            assert await connection.run_sync(_schema_drift) == []
        await downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
    finally:
        await engine.dispose()
