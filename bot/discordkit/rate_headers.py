"""Feeds Discord's rate-limit headers on channel message writes into the bot's write budget."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import aiohttp

from bot.discordkit.write_budget import ChannelWriteBudget

# Sends and edits of a channel's messages: the writes that share Discord's per-channel bucket.
MESSAGE_WRITE = re.compile(r"/channels/(\d+)/messages(?:/\d+)?$")
WRITE_METHODS = frozenset({"POST", "PATCH"})


def observe_response(budget: ChannelWriteBudget, method: str, path: str, headers: Any) -> bool:
    """Tell the budget what Discord said about a message write's bucket; False if it was not one."""
    if method.upper() not in WRITE_METHODS:
        return False
    match = MESSAGE_WRITE.search(path)
    remaining, reset_after = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset-After")
    if match is None or remaining is None or reset_after is None:
        return False
    try:
        left, after = int(remaining), float(reset_after)
    except ValueError:
        return False
    budget.observe(int(match.group(1)), left, after)
    return True


def rate_limit_trace(budget: ChannelWriteBudget) -> aiohttp.TraceConfig:
    """An aiohttp trace for discord.py's HTTP client (`http_trace=`): every answer to a message write
    updates the budget's view of that channel's window before the write's caller sees the result."""

    async def on_request_end(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        observe_response(budget, params.method, params.url.path, params.response.headers)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
