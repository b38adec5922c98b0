"""The one secret redactor: keeps keys out of logs, provider errors, exceptions and user messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET = 6
"""Shorter known secrets are not replaced: mangling ordinary words would hide more than it saves."""

_SENSITIVE = {"key", "api_key", "apikey", "token", "access_token", "secret", "password"}
# Discord bot tokens: three base64url segments separated by dots.
_DISCORD_TOKEN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_KEY_QUERY = re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|secret|password)=)[^&\s'\"]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)")


class Redactor:
    """Replaces every known secret, Discord token, bearer key, key query value and URL password."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a key that contains another is replaced whole.
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _DISCORD_TOKEN.sub(MASK, text)
        text = _BEARER.sub(rf"\1{MASK}", text)
        text = _KEY_QUERY.sub(rf"\1{MASK}", text)
        return _URL_PASSWORD.sub(rf"\1{MASK}\2", text)

    redact = __call__

    def shorten(self, text: str, limit: int) -> str:
        """Redact, then cut to `limit` characters: a key straddling the cut never survives in part."""
        text = self(text)
        return text if len(text) <= limit else text[: limit - 1] + "…"


REDACTOR = Redactor()
"""The process's redactor: logging filters through it and every provider error is cut through it.
Keys join it as they are loaded (`REDACTOR.add`)."""


def safe_url(url: str) -> str:
    """The URL without credentials and with sensitive query values replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode(
        [
            (k, MASK if k.lower() in _SENSITIVE else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
