"""Every setting is documented: in .env.example and in the README's settings table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTING_KEYS = sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_setting_is_in_env_example(key: str) -> None:
    assert f"\n{key}=" in "\n" + (ROOT / ".env.example").read_text()


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_setting_is_in_readme_table(key: str) -> None:
    assert f"| `{key}` |" in (ROOT / "README.md").read_text()
