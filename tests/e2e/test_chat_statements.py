"""How many database statements one answered mention costs (a turn resolves its settings and plan once)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.e2e.harness import World, chat_settings, final_from, running_bot
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

# Settings (guild + channel rows), plan, quota windows (2), storing the question (2 rows), the history
# read and storing the answer: 9, plus one more update when the reply's first message was still being sent
# as the stream ended (14 before the turn engine resolved settings and plan once). The figure is printed;
# this bound catches a layer that starts asking again.
STATEMENT_BOUND = 10


async def test_one_mention_costs_a_bounded_number_of_statements(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    gateway = GatewayEmulator("openai", reply="Counted.")
    async with gateway, running_bot(discord_emu, chat_settings(discord_emu, gateway, tmp_path)) as bot:
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(" ".join(statement.split()[:4]))

        # Warm up (the conversation row is created on a channel's first turn).
        me = discord_emu.bot_user.id
        await discord_emu.send_message(world.member, world.general, f"<@{me}> warm up")
        first = await discord_emu.wait_for_message(world.general, final_from(discord_emu))
        await asyncio.sleep(0.2)  # the warm-up turn's last write lands after its final edit
        event.listen(bot.db_engine.sync_engine, "before_cursor_execute", count)
        try:
            await discord_emu.send_message(world.member, world.general, f"<@{me}> count me")
            await discord_emu.wait_for_message(world.general, final_from(discord_emu), after=first)
            await asyncio.sleep(0.2)
        finally:
            event.remove(bot.db_engine.sync_engine, "before_cursor_execute", count)
    print(f"DB statements for one mention: {len(statements)}:", *statements, sep="\n  ")
    assert 0 < len(statements) <= STATEMENT_BOUND
