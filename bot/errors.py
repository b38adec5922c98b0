"""Domain errors a user should read: cogs and services raise them, the command tree explains them."""

from __future__ import annotations


class ConcordError(Exception):
    """An error whose message is written for the person who used the command.

    The message is one sentence, safe to show: no secrets, URLs with keys or tracebacks.
    """

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class InvalidInput(ConcordError):
    """The user's input was rejected before any work was done."""


class FeatureUnavailable(ConcordError):
    """The capability exists but is not configured or is switched off here."""


class ConfigError(Exception):
    """Settings could not be loaded; the message names the key and the expected form."""
