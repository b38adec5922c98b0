"""A test-only extension that fails to load, to prove the others still load."""

from __future__ import annotations

from discord.ext import commands


async def setup(bot: commands.Bot) -> None:
    raise RuntimeError("this extension is broken on purpose")
