"""/ask: a web-searched answer (GlobalAsk) streamed into one reply, its sources numbered at the end."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import reserve_quota
from bot.discordkit.live_reply import InteractionTarget, LiveReply
from bot.discordkit.presses import hand_to_cog, owner_only
from bot.errors import ConcordError
from bot.providers.types import AskChunk, StreamEnd
from bot.services.quotas import Feature

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

COG_NAME = "Ask"
STOP_PREFIX = "concord:ask:stop"
SOURCES_HEADING = "**Sources**"
ALREADY_FINISHED = "That answer is already finished, so there is nothing to stop."
# A source must be a plain web address: anything else (spaces, angle brackets, other schemes) could
# break out of the `<url>` that keeps Discord from embedding it.
_SOURCE_URL = re.compile(r"^https?://[^\s<>|`]{1,1900}$", re.IGNORECASE)


@dataclass
class AskResult:
    """What a stream gave: its end (None when stopped or broken), and the sources in order of arrival."""

    end: StreamEnd | None = None
    stopped: bool = False
    sources: list[str] = field(default_factory=list)

    def add_source(self, url: str | None) -> None:
        if url and _SOURCE_URL.match(url) and url not in self.sources:
            self.sources.append(url)


def sources_block(sources: list[str]) -> str:
    """The numbered list of distinct sources, each wrapped in <> so Discord shows no preview."""
    if not sources:
        return ""
    lines = "\n".join(f"{number}. <{url}>" for number, url in enumerate(sources, start=1))
    return f"\n\n{SOURCES_HEADING}\n{lines}"


class AskStopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{STOP_PREFIX}:(?P<owner>[0-9]{{1,20}}):(?P<key>[0-9a-f]{{1,16}}\.[0-9]{{1,12}})",
):
    """Stops an answer being written; only the person who asked may press it."""

    def __init__(self, owner_id: int, key: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Stop",
                style=discord.ButtonStyle.secondary,
                emoji="⏹️",
                custom_id=f"{STOP_PREFIX}:{owner_id}:{key}",
            )
        )
        self.owner_id = owner_id
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AskStopButton:
        return cls(int(match["owner"]), match["key"])

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await owner_only(interaction, self.owner_id, f"Only <@{self.owner_id}> can stop this answer.")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await hand_to_cog(
            interaction,
            cog_name=COG_NAME,
            unavailable="Web answers are not available right now.",
            where=f"Ask button {self.custom_id}",
            action=lambda cog: cog.stop_pressed(interaction, self),
        )


class Ask(commands.Cog, name=COG_NAME):
    """Web answers with their sources."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self._live: dict[str, asyncio.Event] = {}
        self._finished: set[str] = set()
        # A key names one answer being written: this process's run id and a counter.
        self._run = os.urandom(4).hex()
        self._keys = itertools.count(1)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AskStopButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AskStopButton)
        for stop in self._live.values():
            stop.set()

    @app_commands.command(name="ask", description="Ask a question answered from the web, with its sources.")
    @app_commands.describe(prompt="What you want to know")
    async def ask(
        self, interaction: discord.Interaction[Concord], prompt: app_commands.Range[str, 1, 2000]
    ) -> None:
        await self.bot.guild_config.ensure_enabled(interaction.guild_id, "ask")
        key = f"{self._run}.{next(self._keys)}"
        # Quota before the defer: a denial is then the interaction's first (ephemeral) response.
        async with reserve_quota(self.bot.quotas, interaction, Feature.ASK) as reservation:
            await interaction.response.defer(thinking=True)
            stop = self._live[key] = asyncio.Event()
            view = discord.ui.View(timeout=None)
            view.add_item(AskStopButton(interaction.user.id, key))
            live = LiveReply(
                InteractionTarget(interaction, ephemeral=False),
                self.bot.write_budget,
                edit_interval=self.bot.settings.ask_edit_interval,
                writing_view=view,
            )
            live.start()
            try:
                result = await self._stream(prompt, live, stop)
                reservation.keep()  # the service answered: it counts even if cut short or stopped
            except BaseException:
                await live.abandon()
                raise
            finally:
                self._live.pop(key, None)
        self._finished.add(key)
        end = result.end
        text = end.text if end is not None and len(end.text) >= len(live.text) else live.text
        await live.finish(
            complete=end is not None and end.complete,
            stopped=result.stopped,
            text=text + sources_block(result.sources),
        )

    async def _stream(self, prompt: str, live: LiveReply, stop: asyncio.Event) -> AskResult:
        """Feed the answer into the reply until it ends or the requester presses Stop."""
        result = AskResult()
        got_text = False

        async def consume() -> None:
            nonlocal got_text
            async with aclosing(self.bot.providers.ask(prompt)) as items:
                async for item in items:
                    if isinstance(item, StreamEnd):
                        result.end = item
                        live.stream_ended()
                        return
                    if isinstance(item, AskChunk):
                        result.add_source(item.url)
                        if item.message:
                            got_text = True
                            live.append(item.message)

        consumer = asyncio.ensure_future(consume())
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consumer, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if consumer.done():
            try:
                consumer.result()
            except ConcordError:
                raise
            except Exception:
                if not got_text:
                    raise
                log.exception("An /ask stream failed after text arrived; showing it as cut off")
                result.end = StreamEnd(complete=False, provider="?", text=live.text, reason="error")
            return result
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        result.stopped = True
        return result

    async def stop_pressed(self, interaction: discord.Interaction[Any], button: AskStopButton) -> None:
        stop = self._live.get(button.key)
        if stop is not None:
            stop.set()
            await interaction.response.defer()  # the answer's final edit replaces the button
            return
        if button.key in self._finished:
            await interaction.response.send_message(ALREADY_FINISHED, ephemeral=True)
            return
        # Nobody writes this answer any more (the bot restarted): clear the stale button.
        await interaction.response.edit_message(view=None)
        await interaction.followup.send(
            "That answer stopped being written, so nothing is left to stop.", ephemeral=True
        )


async def setup(bot: Concord) -> None:
    await bot.add_cog(Ask(bot))
