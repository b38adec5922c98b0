"""The Retry button under a failed /vision answer: persistent, it names the requester and the stored question.

Like the image buttons it is a `DynamicItem` whose custom_id carries the requester and the row id, so a
failure posted before a restart can still be retried. The Vision cog registers it when it loads and does the
work; the button only parses its custom_id and checks who pressed.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Protocol

import discord

from bot.discordkit.responses import reply
from bot.discordkit.tree import explain

PREFIX = "concord:vision"
COG_NAME = "Vision"
UNAVAILABLE = "Vision is not available right now; try again in a moment."


class VisionRetryHandler(Protocol):
    async def vision_retry_pressed(
        self, interaction: discord.Interaction[Any], button: VisionRetryButton
    ) -> None: ...


class VisionRetryButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{PREFIX}:retry:(?P<owner>[0-9]{{1,20}}):(?P<ask>[0-9]{{1,12}})",
):
    def __init__(self, owner_id: int, ask_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Retry",
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id=f"{PREFIX}:retry:{owner_id}:{ask_id}",
            )
        )
        self.owner_id = owner_id
        self.ask_id = ask_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VisionRetryButton:
        return cls(int(match["owner"]), int(match["ask"]))

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            f"Only <@{self.owner_id}> can use this button.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler: VisionRetryHandler | None = interaction.client.get_cog(COG_NAME)
        if handler is None:
            await reply(interaction, UNAVAILABLE, ephemeral=True)
            return
        try:
            await handler.vision_retry_pressed(interaction, self)
        except Exception as exc:
            # discord.py only logs what a dynamic item's callback raises; the user gets one sentence.
            message = explain(exc, where=f"Vision button {self.custom_id} (user {interaction.user.id})")
            with contextlib.suppress(discord.HTTPException):
                await reply(interaction, message, ephemeral=True)


def retry_view(owner_id: int, ask_id: int) -> discord.ui.View:
    """The Retry button alone, under a failed answer."""
    view = discord.ui.View(timeout=None)
    view.add_item(VisionRetryButton(owner_id, ask_id))
    return view
