"""SIGTERM mid-reply: the bot subprocess marks the reply interrupted in Discord and in the store, exits 0,
and a restart on the same database remembers the question and the partial answer."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.discordkit.live_reply import INTERRUPTED_NOTE, WRITING_MARKER
from bot.store.engine import create_engine
from bot.store.models import ConversationMessage
from tests.e2e.harness import World, bot_messages, emulator_settings, final_from, running_bot, until
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator
from tests.test_cli import cli_environment


class HangingGateway(GatewayEmulator):
    """Streams two chunks, then keeps the stream open (a model still writing)."""

    hang = True

    async def _stream_fault(
        self, request: web.Request, response: web.StreamResponse, fault: Any, sent: int
    ) -> bool:
        if sent == 2 and self.hang:
            await self._stall()
            return True
        return await super()._stream_fault(request, response, fault, sent)


async def test_sigterm_mid_reply_marks_it_interrupted_and_a_restart_remembers_it(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    gateway = HangingGateway("openai", stream_chunks=["Partial ", "answer "])
    async with gateway:
        providers = tmp_path / "providers.toml"
        providers.write_text(
            f'[[provider]]\nname = "emu"\nprofile = "openai"\nbase_url = "{gateway.base_url}"\nretries = 0\n'
        )
        environment = cli_environment(
            tmp_path,
            DISCORD_TOKEN=discord_emu.token,
            DISCORD_API_BASE=discord_emu.api_base,
            DISCORD_GATEWAY_URL=discord_emu.gateway_url,
            GUILD_READY_TIMEOUT="0.1",
            PROVIDERS_FILE=str(providers),
            SHUTDOWN_GRACE="0.5",
            CHAT_EDIT_INTERVAL="0.2",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await discord_emu.wait_until_ready(timeout=30)
            me = discord_emu.bot_user.id
            await discord_emu.send_message(world.member, world.general, f"<@{me}> tell me everything")
            await until(
                lambda: any(
                    "Partial answer" in m["content"] for m in bot_messages(discord_emu, world.general)
                ),
                20,
            )
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert "Traceback" not in stderr.decode()
        [shown] = bot_messages(discord_emu, world.general)
        assert shown["content"] == "Partial answer" + INTERRUPTED_NOTE
        assert WRITING_MARKER not in shown["content"]

        database = tmp_path / "cli.db"
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        async with engine.connect() as connection:
            rows = (
                await connection.execute(select(ConversationMessage).order_by(ConversationMessage.id))
            ).all()
        await engine.dispose()
        assert [(r.role, r.content.strip(), r.incomplete) for r in rows] == [
            ("user", "tell me everything", False),
            ("assistant", "Partial answer", True),
        ]

        # A restart on the same file: the next question sees the question and the partial answer.
        gateway.hang = False
        gateway.stream_chunks = None
        gateway.reply = "Continuing."
        settings = emulator_settings(discord_emu, f"sqlite+aiosqlite:///{database}", providers_file=providers)
        async with running_bot(discord_emu, settings):
            await discord_emu.send_message(world.member, world.general, f"<@{me}> go on")
            await discord_emu.wait_for_message(world.general, final_from(discord_emu), after=shown)
        history = [m["content"] for m in gateway.requests_for("chat")[-1].json["messages"][1:]]
        assert history == [
            '[speaker: "bob"]\ntell me everything',
            "Partial answer ",
            '[speaker: "bob"]\ngo on',
        ]
