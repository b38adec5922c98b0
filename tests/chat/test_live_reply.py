"""A streamed reply says how long it will not read new text, so its stream can be read less often."""

from __future__ import annotations

import asyncio
from typing import Any

import discord

from bot.discordkit.live_reply import LiveReply
from bot.discordkit.write_budget import ChannelWriteBudget


class Target:
    channel_id = budget_key = 42
    first_message_id = None

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.sent = asyncio.Event()

    async def send(self, content: str, view: discord.ui.View | None, *, first: bool) -> Any:
        self.writes.append(content)
        self.sent.set()
        return len(self.writes)

    async def edit(self, handle: Any, content: str, view: discord.ui.View | None) -> None:
        self.writes.append(content)


async def test_quiet_for_follows_the_next_write_of_the_reply() -> None:
    budget = ChannelWriteBudget(limit=4, window=5.5, reserve=1)
    target = Target()
    reply = LiveReply(target, budget, edit_interval=1.0)
    reply.start()
    assert reply.quiet_for() == 0.0  # nothing shown yet: the first text is wanted at once

    reply.append("first words")
    await asyncio.wait_for(target.sent.wait(), 2)
    await asyncio.sleep(0.01)
    quiet = reply.quiet_for()
    assert 0.5 < quiet <= budget.spacing(42)  # the next edit waits for its slot in the channel

    reply.append(" and more")
    await asyncio.sleep(0.1)
    assert reply.quiet_for() < quiet  # counting down to that edit

    reply.stream_ended()
    assert reply.quiet_for() == 0.0  # the end is written at once
    await reply.finish()
    assert target.writes[-1].startswith("first words and more")
