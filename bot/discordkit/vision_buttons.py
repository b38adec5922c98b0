"""The Retry button under a failed /vision answer: persistent, it names the requester and the stored question.

Like the image buttons it is a `DynamicItem` whose custom_id carries the requester and the row id, so a
failure posted before a restart can still be retried. The Vision cog registers it when it loads and does the
work; the button only parses its custom_id and checks who pressed.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.discordkit.presses import hand_to_cog, owner_only

PREFIX = "concord:vision"
COG_NAME = "Vision"
UNAVAILABLE = "Vision is not available right now; try again in a moment."


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
        return await owner_only(interaction, self.owner_id, f"Only <@{self.owner_id}> can use this button.")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await hand_to_cog(
            interaction,
            cog_name=COG_NAME,
            unavailable=UNAVAILABLE,
            where=f"Vision button {self.custom_id}",
            action=lambda handler: handler.vision_retry_pressed(interaction, self),
        )


def retry_view(owner_id: int, ask_id: int) -> discord.ui.View:
    """The Retry button alone, under a failed answer."""
    view = discord.ui.View(timeout=None)
    view.add_item(VisionRetryButton(owner_id, ask_id))
    return view
