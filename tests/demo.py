"""`make demo`: the real bot against the loopback emulators, a scripted session, printed as a user sees it.

No keys, no network: Discord and the AI gateways are the emulators in tests/emulators/.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import World, build_world, emulator_settings, running_bot, sqlite_url
from tests.emulators.discord_emulator import DiscordEmulator

WIDTH = 88


@dataclass
class Demo:
    emu: DiscordEmulator
    world: World
    bot: Any

    def say(self, who: str, text: str) -> None:
        print(f"\n{who} ▸ {text}")

    def show_message(self, message: dict[str, Any] | None, *, ephemeral: bool = False) -> None:
        if message is None:
            print("  (no message)")
            return
        label = "Concord (only you can see this)" if ephemeral else "Concord"
        if message.get("content"):
            print(f"  {label}:")
            for line in message["content"].splitlines() or [""]:
                print(textwrap.indent(textwrap.fill(line, WIDTH) if line else "", "    "))
        for embed in message.get("embeds") or []:
            self._show_embed(embed, label if not message.get("content") else None)
        for attachment in message.get("attachments") or []:
            print(f"    📎 {attachment.get('filename')} ({attachment.get('size', '?')} bytes)")

    def _show_embed(self, embed: dict[str, Any], label: str | None) -> None:
        if label:
            print(f"  {label}:")
        print("    ┌" + "─" * (WIDTH - 6))
        if embed.get("title"):
            print(f"    │ {embed['title']}")
        if embed.get("description"):
            for line in embed["description"].splitlines():
                print(f"    │ {line}")
        for field in embed.get("fields") or []:
            print(f"    │ ▸ {field['name']}")
            for line in str(field["value"]).splitlines():
                print(f"    │   {line}")
        if (embed.get("footer") or {}).get("text"):
            print(f"    │ — {embed['footer']['text']}")
        print("    └" + "─" * (WIDTH - 6))

    async def slash(self, user: Any, command: str, *, channel: Any, **options: Any) -> Any:
        shown = " ".join(f"{name}:{value}" for name, value in options.items())
        where = "DM" if channel is self.emu.dm_channel(user) else f"#{channel.name}"
        self.say(f"{user.name} in {where}", f"/{command} {shown}".rstrip())
        itx = await self.emu.run_command(user, command, options=options, channel=channel)
        await itx.wait_for_response(timeout=10)
        return itx


Scene = Callable[[Demo], Awaitable[None]]


async def scene_help_and_ping(demo: Demo) -> None:
    itx = await demo.slash(demo.world.member, "help", channel=demo.world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(demo.world.member, "ping", channel=demo.world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(demo.world.member, "ping", channel=demo.emu.dm_channel(demo.world.member))
    demo.show_message(itx.original, ephemeral=itx.ephemeral)


# Each capability adds its scene here, in the order a new user would meet them.
SCENES: list[Scene] = [scene_help_and_ping]


async def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(levelname)s %(name)s: %(message)s")
    emu = DiscordEmulator()
    await emu.start()
    world = build_world(emu)
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = emulator_settings(emu, sqlite_url(Path(folder)), log_level="WARNING")
            print(f"Concord demo: Discord emulator at {emu.api_base}; guild '{world.guild.name}'.")
            async with running_bot(emu, settings) as bot:
                demo = Demo(emu=emu, world=world, bot=bot)
                for scene in SCENES:
                    await scene(demo)
    finally:
        await emu.close()
    print("\nDemo finished.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
