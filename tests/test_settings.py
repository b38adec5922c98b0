"""Settings: defaults, parsing from the environment and .env, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DISCORD_TOKEN", "DATABASE_URL", "SHARD_COUNT", "OWNER_IDS", "LOG_LEVEL", "DEV_GUILD_ID"):
        monkeypatch.delenv(key, raising=False)


def test_defaults_without_any_configuration() -> None:
    settings = load_settings(env_file=None)
    assert settings.discord_token is None
    assert settings.database_url == "sqlite+aiosqlite:///data/concord.db"
    assert settings.shard_count is None
    assert settings.owner_ids == []
    assert settings.is_sqlite


def test_reads_env_file_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DISCORD_TOKEN=from-file\nOWNER_IDS=1, 2 ,3\nSHARD_COUNT=\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("DEV_GUILD_ID", "42")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    settings = load_settings(env_file=env_file)
    assert settings.discord_token is not None
    assert settings.discord_token.reveal() == "from-file"
    assert settings.owner_ids == [1, 2, 3]
    assert settings.shard_count is None
    assert settings.dev_guild_id == 42
    assert settings.log_level == "WARNING"


def test_postgres_url_switches_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://concord:pw@localhost/concord")
    assert not load_settings(env_file=None).is_sqlite


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("SHARD_COUNT", "many", "SHARD_COUNT"),
        ("SHARD_COUNT", "0", "SHARD_COUNT"),
        ("OWNER_IDS", "12,abc", "OWNER_IDS"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL"),
        ("DATABASE_URL", "mysql://x", "sqlite+aiosqlite://"),
        ("GUILD_READY_TIMEOUT", "-1", "GUILD_READY_TIMEOUT"),
    ],
)
def test_invalid_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    message = str(caught.value)
    assert f"Invalid setting {key}" in message
    assert expected in message


def test_secret_values_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token-value")
    monkeypatch.setenv("SHARD_COUNT", "x")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "super-secret-token-value" not in str(caught.value)


def test_database_url_with_password_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2pw@db/concord")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "DATABASE_URL" in str(caught.value)
    assert "hunter2pw" not in str(caught.value)
