"""How many database statements one answered mention costs (a turn resolves its settings and plan once)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from bot.app import Concord
from bot.store.models import ConversationMessage
from tests.e2e.harness import World, chat, chat_settings, final_from, running_bot
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

# In a channel that has talked before: the quota take (one statement for every window), the question and
# its empty answer (one insert), the answer (one update), and one more update for the id of a reply written
# whole before its message went out. Settings and plans are cached, and the history is in memory. (14
# before the turn engine resolved settings and plan once, 9 before the conversation tails.) The figure is
# printed; this bound catches a layer that starts asking again.
STATEMENT_BOUND = 4


@contextlib.contextmanager
def statements_sent(bot: Concord) -> Iterator[list[str]]:
    """The first four words of every statement the bot's engine sends inside the block."""
    sent: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()[:4]))

    event.listen(bot.db_engine.sync_engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(bot.db_engine.sync_engine, "before_cursor_execute", count)


async def test_one_mention_costs_a_bounded_number_of_statements(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    gateway = GatewayEmulator("openai", reply="Counted.")
    async with gateway, running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        # Warm up (the conversation row is created on a channel's first turn).
        me = discord_emu.bot_user.id
        await discord_emu.send_message(world.member, world.general, f"<@{me}> warm up")
        first = await discord_emu.wait_for_message(world.general, final_from(discord_emu))
        await asyncio.sleep(0.2)  # the warm-up turn's last write lands after its final edit
        with statements_sent(bot) as statements:
            await discord_emu.send_message(world.member, world.general, f"<@{me}> count me")
            await discord_emu.wait_for_message(world.general, final_from(discord_emu), after=first)
            await asyncio.sleep(0.2)
    print(f"DB statements for one mention: {len(statements)}:", *statements, sep="\n  ")
    assert 0 < len(statements) <= STATEMENT_BOUND
    assert not any(s.startswith("SELECT") for s in statements)  # nothing read: settings, plan, history


async def test_one_slash_chat_costs_three_statements_and_stores_its_message(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    gateway = GatewayEmulator("openai", reply="Counted.")
    async with gateway, running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        await chat(discord_emu, world.member, world.general, "warm up")
        await asyncio.sleep(0.2)
        with statements_sent(bot) as statements:
            itx = await chat(discord_emu, world.member, world.general, "count me")
            await asyncio.sleep(0.2)
        async with bot.db_sessions() as session:
            reply = await session.scalar(select(ConversationMessage).order_by(ConversationMessage.id.desc()))
    # The quota, the question (one insert), the answer with its message's id, known from the defer.
    assert [s.split()[0] for s in statements] == ["INSERT", "INSERT", "UPDATE"]
    assert reply is not None and reply.content == "Counted."
    assert reply.discord_message_ids == [str(itx.original["id"])]
