"""Settings never show credentials, and reading them loads no validation library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings, SettingsInvalid

ROOT = Path(__file__).resolve().parents[1]


def test_repr_and_str_hide_the_token_and_the_database_password() -> None:
    settings = Settings(
        _env_file=None, discord_token="tok-abc123", database_url="postgresql+asyncpg://u:hunter2@db/c"
    )
    for shown in (repr(settings), str(settings), repr(settings.discord_token), str(settings.discord_token)):
        assert "tok-abc123" not in shown and "hunter2" not in shown
    assert settings.discord_token is not None and settings.discord_token.reveal() == "tok-abc123"


def test_a_copy_is_checked_again_and_keeps_the_secret() -> None:
    settings = Settings(_env_file=None, discord_token="tok-abc123", http_port="8080")
    copy = settings.model_copy(update={"http_port": None})
    assert copy.http_port is None and copy.discord_token == settings.discord_token
    with pytest.raises(SettingsInvalid, match="HTTP_PORT"):
        settings.model_copy(update={"http_port": "70000"})


def test_every_bad_key_is_one_sentence() -> None:
    with pytest.raises(SettingsInvalid) as raised:
        Settings(_env_file=None, shard_count="0", log_level="loud", owner_ids="1,x")
    assert str(raised.value) == (
        "Invalid setting SHARD_COUNT: must be at least 1 (got '0'). "
        "Invalid setting OWNER_IDS: must be comma-separated user ids, and 'x' is not a number (got '1,x'). "
        "Invalid setting LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR (got 'loud')."
    )


def test_the_bot_and_its_cogs_import_no_pydantic() -> None:
    code = (
        "import importlib, sys, bot.__main__; from bot.app import EXTENSIONS; "
        "[importlib.import_module(name) for name in EXTENSIONS]; "
        "print(sorted(m for m in sys.modules if 'pydantic' in m))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
