"""Secrets never reach the log: tokens, bearer keys, key query parameters and URL passwords."""

from __future__ import annotations

import io
import logging

from bot.logging_setup import REDACTED, SecretRedactor, setup_logging

FAKE_DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GabcDE.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_redactor_removes_each_kind_of_secret() -> None:
    redactor = SecretRedactor(["configured-provider-key"])
    text = (
        f"token={FAKE_DISCORD_TOKEN} Authorization: Bearer sk-live-123456 "
        "GET https://api.example/check?key=abcdef123&x=1 postgresql+asyncpg://user:pa55word@db/x "
        "and configured-provider-key"
    )
    redacted = redactor.redact(text)
    for secret in (FAKE_DISCORD_TOKEN, "sk-live-123456", "abcdef123", "pa55word", "configured-provider-key"):
        assert secret not in redacted
    assert "x=1" in redacted  # ordinary parameters stay readable


def test_logged_records_and_tracebacks_are_redacted() -> None:
    redactor = setup_logging("INFO", ["secret-key-42"])
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("concord.test")
    log.info("calling provider with %s", "secret-key-42")
    try:
        raise RuntimeError(f"upstream said no to {FAKE_DISCORD_TOKEN}")
    except RuntimeError:
        log.exception("failure")
    redactor.add_secret("late-secret-99")
    log.warning("late-secret-99 appeared")
    output = stream.getvalue()
    assert "secret-key-42" not in output
    assert FAKE_DISCORD_TOKEN not in output
    assert "late-secret-99" not in output
    assert "RuntimeError" in output and REDACTED in output


def test_provider_errors_and_logs_share_one_redactor() -> None:
    from bot.providers.redact import REDACTOR

    SecretRedactor(["shared-key-7777"])
    assert "shared-key-7777" not in REDACTOR("upstream echoed shared-key-7777")
