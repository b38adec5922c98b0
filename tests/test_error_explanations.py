"""tree.explain: the one sentence a user sees for any error, and what gets logged with it."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.discordkit.tree import explain
from bot.errors import InvalidInput


def discord_error(cls: type[discord.HTTPException], status: int) -> Any:
    response = SimpleNamespace(status=status, reason="refused")
    return cls(response, {"code": 50013, "message": "Missing Permissions"})  # type: ignore[arg-type]


def test_a_domain_error_is_its_own_message(caplog: pytest.LogCaptureFixture) -> None:
    assert explain(InvalidInput("Too long: the limit is 1000 characters."), where="test") == (
        "Too long: the limit is 1000 characters."
    )
    assert caplog.records == []


def test_discord_refusals_and_outages_are_explained_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    assert "missing a permission" in explain(discord_error(discord.Forbidden, 403), where="post")
    assert "Discord is having trouble" in explain(
        discord_error(discord.DiscordServerError, 503), where="post"
    )
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.WARNING]
    assert all(record.exc_info is None for record in caplog.records)


def test_anything_else_gets_a_correlation_id_that_the_log_carries(caplog: pytest.LogCaptureFixture) -> None:
    message = explain(RuntimeError("internal detail"), where="Chat button x")
    match = re.fullmatch(r".*quote error id `([0-9a-f]{8})`\.", message)
    assert match and "internal detail" not in message
    [record] = caplog.records
    assert record.levelno == logging.ERROR and match.group(1) in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "internal detail"
