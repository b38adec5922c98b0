"""Discord's rate-limit headers on message writes reach the write budget; other requests do not."""

from __future__ import annotations

import pytest

from bot.discordkit.rate_headers import observe_response
from bot.discordkit.write_budget import ChannelWriteBudget, Priority


async def test_a_message_writes_headers_set_the_channels_window() -> None:
    now = [10.0]
    budget = ChannelWriteBudget(clock=lambda: now[0])

    async def noop() -> None:
        return None

    await budget.write(42, noop, priority=Priority.FINAL)
    headers = {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset-After": "3.250"}
    assert observe_response(budget, "PATCH", "/api/v10/channels/42/messages/99", headers)
    assert budget.recent_writes(42) == budget.limit  # one left on Discord's side: none for the bot
    now[0] = 13.3
    assert budget.recent_writes(42) == 0  # Discord's window reset, not the budget's own guess
    assert budget.stats.observed == 1


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("DELETE", "/api/v10/channels/42/messages/99", {"X-RateLimit-Remaining": "0"}),
        (
            "POST",
            "/api/v10/channels/42/typing",
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1"},
        ),
        ("PATCH", "/api/v10/webhooks/1/tok/messages/@original", {"X-RateLimit-Remaining": "0"}),
        ("POST", "/api/v10/channels/42/messages", {}),
        (
            "POST",
            "/api/v10/channels/42/messages",
            {"X-RateLimit-Remaining": "x", "X-RateLimit-Reset-After": "1"},
        ),
    ],
)
def test_other_requests_and_bad_headers_are_ignored(method: str, path: str, headers: dict[str, str]) -> None:
    budget = ChannelWriteBudget()
    assert not observe_response(budget, method, path, headers)
    assert budget.stats.observed == 0
