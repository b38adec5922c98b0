"""Errors the provider client raises: what a user reads, and what logs and `doctor` need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import ConcordError, FeatureUnavailable, InvalidInput


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One failed try against one provider: the shape purlabs reports in its `records`."""

    provider: str
    status: int | None
    reason: str

    def __str__(self) -> str:
        status = self.status if self.status is not None else "-"
        return f"{self.provider} [{status}] {self.reason}"


class InvalidRequest(InvalidInput):
    """The request was rejected before anything was sent."""


class ParameterError(InvalidRequest):
    """One parameter is outside what the gateway accepts; `.parameter` names it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"The parameter `{parameter}` {problem}.")
        self.parameter = parameter
        self.problem = problem


class CapabilityUnavailable(FeatureUnavailable):
    """No configured provider offers the capability that was asked for."""

    def __init__(self, capability: str) -> None:
        super().__init__(f"No configured AI provider offers {capability.replace('_', ' ')}.")
        self.capability = capability


class ProviderUnavailable(ConcordError):
    """Every provider that could serve the request failed; `.attempts` says how, one record each."""

    def __init__(self, capability: str, attempts: Sequence[AttemptRecord], user_message: str | None = None):
        super().__init__(
            user_message
            or "The AI service is not answering right now, so nothing was generated; please try again soon."
        )
        self.capability = capability
        self.attempts = list(attempts)

    def __str__(self) -> str:
        detail = "; ".join(str(a) for a in self.attempts) or "no provider was tried"
        return f"{self.user_message} ({self.capability}: {detail})"


class OutcomeUnknown(ProviderUnavailable):
    """A job-creating request timed out after it was sent: it may or may not have been created.

    It is not retried, because a retry could create a second job (and a second bill).
    """

    def __init__(self, capability: str, attempts: Sequence[AttemptRecord]) -> None:
        super().__init__(
            capability,
            attempts,
            "The AI service did not confirm the request in time; it may still arrive, so it was not resent.",
        )
