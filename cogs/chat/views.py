"""The buttons under a chat reply: Stop while the model writes, Regenerate once it is done."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.discordkit.responses import reply
from bot.discordkit.tree import explain
from bot.discordkit.write_budget import ChannelWriteBudget, Priority

log = logging.getLogger(__name__)

STOP_ID = "concord:chat:stop"
REGENERATE_ID = "concord:chat:regenerate"


class OwnerOnlyView(discord.ui.View):
    """Only the person who asked may press; everyone else is told so, privately."""

    def __init__(self, owner_id: int, *, timeout: float | None) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            f"Only <@{self.owner_id}> can use these buttons.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await reply(
            interaction,
            explain(error, where=f"Chat button {getattr(item, 'custom_id', '?')}"),
            ephemeral=True,
        )


class StopView(OwnerOnlyView):
    """Shown while a reply is being written; pressing Stop ends the generation."""

    def __init__(self, owner_id: int, *, timeout: float | None) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.stopped = asyncio.Event()

    @discord.ui.button(label="Stop", style=discord.ButtonStyle.secondary, emoji="⏹️", custom_id=STOP_ID)
    async def stop_button(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self.stopped.set()
        # Deferred update: the reply's final edit (a few hundred ms later) swaps the buttons.
        await interaction.response.defer()


Regenerate = Callable[[discord.Interaction[Any], "RegenerateView"], Awaitable[None]]


class RegenerateView(OwnerOnlyView):
    """Shown under a finished reply; Regenerate asks again. Disabled (one edit) when it times out."""

    def __init__(
        self,
        owner_id: int,
        on_regenerate: Regenerate,
        *,
        timeout: float,
        budget: ChannelWriteBudget,
        channel_id: int,
    ) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.on_regenerate = on_regenerate
        self.budget = budget
        self.channel_id = channel_id
        self.message: Any = None
        self.turn_ids: tuple[int, int] | None = None
        """(prompt id, reply id) of the stored turn; None for a private turn."""

    @discord.ui.button(
        label="Regenerate", style=discord.ButtonStyle.secondary, emoji="🔄", custom_id=REGENERATE_ID
    )
    async def regenerate_button(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        await self.on_regenerate(interaction, self)

    def disable(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        self.stop()

    async def on_timeout(self) -> None:
        self.disable()
        message = self.message
        if message is None:
            return

        async def edit() -> None:
            await message.edit(view=self)

        try:
            await self.budget.write(
                self.channel_id, edit, priority=Priority.PROGRESS, key=("chat-view", id(self))
            )
        except discord.HTTPException as exc:
            log.debug("Could not disable the Regenerate button: %s", exc)
