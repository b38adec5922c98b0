"""Configures logging once for the process and redacts secrets from every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.providers.redact import MASK, REDACTOR, Redactor

REDACTED = MASK


class SecretRedactor(logging.Filter):
    """Rewrites a record's final message through the process's one redactor (`bot.providers.redact`)."""

    def __init__(self, secrets: Iterable[str] = (), *, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor
        for secret in secrets:
            redactor.add(secret)

    def add_secret(self, secret: str | None) -> None:
        self._redactor.add(secret)

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> SecretRedactor:
    """Install one stderr handler with the redactor; calling it again replaces the previous setup."""
    redactor = SecretRedactor(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # discord.py's HTTP client logs full request bodies at DEBUG; keep it quieter than ours.
    logging.getLogger("discord.http").setLevel(max(logging.getLevelName(level), logging.INFO))
    return redactor


def add_secret(secret: str | None) -> None:
    """Teach the process's redactor one more secret (e.g. a provider key loaded after logging started)."""
    REDACTOR.add(secret)
