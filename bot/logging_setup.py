"""Configures logging once for the process and redacts secrets from every record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Discord bot tokens: three base64url segments separated by dots.
_DISCORD_TOKEN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_KEY_QUERY = re.compile(r"(?i)([?&](?:key|api_key|token|access_token)=)[^&\s'\"]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)")

REDACTED = "[redacted]"


class SecretRedactor(logging.Filter):
    """Rewrites a record's final message so no known secret or key-shaped string survives."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _DISCORD_TOKEN.sub(REDACTED, text)
        text = _BEARER.sub(rf"\1{REDACTED}", text)
        text = _KEY_QUERY.sub(rf"\1{REDACTED}", text)
        return _URL_PASSWORD.sub(rf"\1{REDACTED}\2", text)

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
    """Teach the installed redactor one more secret (e.g. a provider key loaded after logging started)."""
    for handler in logging.getLogger().handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, SecretRedactor):
                log_filter.add_secret(secret)
