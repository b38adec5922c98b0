"""Runs the Alembic migrations in `migrations/` against the configured database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # Alembic is imported only when a migration runs: most starts find the schema current.
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# `revision: str = "0002"` / `down_revision: str | None = "0001"` (or None) in a revision file.
_DECLARED = re.compile(r"""^(revision|down_revision)\b[^=\n]*=\s*(?:"([^"]+)"|'([^']+)'|(None))\s*$""", re.M)


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # "%" is Alembic's interpolation character; passwords may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to `revision` on a connection the caller's engine provides."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection: Connection) -> None:
        from alembic import command

        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection: Connection) -> None:
        from alembic import command

        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def declared_head() -> str | None:
    """The one head revision the files in migrations/versions name, read as text without Alembic;
    None when that is not clear-cut (a merge, a branch, a file this reader does not understand)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {m.group(1): m.group(2) or m.group(3) for m in _DECLARED.finditer(path.read_text())}
        if "revision" not in found or "down_revision" not in found or found["revision"] is None:
            return None
        revisions.add(found["revision"])
        if found["down_revision"] is not None:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def stored_revision(engine: AsyncEngine) -> str | None:
    """The revision recorded in the database (plain SQL); None for a new database or several rows."""
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    except DBAPIError:  # no alembic_version table yet
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


async def upgrade_if_behind(engine: AsyncEngine) -> bool:
    """What a start does: migrate to head, but skip Alembic altogether (its import costs ~0.3 s and ~9 MB)
    when the database already records the head revision. Returns whether Alembic ran."""
    head = declared_head()
    if head is not None and await stored_revision(engine) == head:
        return False
    await upgrade(engine)
    return True
