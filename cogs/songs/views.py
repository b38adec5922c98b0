"""The Cancel button under a song's status message: persistent, for the requester only."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.discordkit.presses import hand_to_cog, owner_only

CANCEL_PREFIX = "concord:suno:cancel"
COG_NAME = "Songs"
_GROUP = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{CANCEL_PREFIX}:(?P<owner>[0-9]{{1,20}}):(?P<group>{_GROUP})",
):
    """Stops watching the song request the custom_id names; works after a restart too."""

    def __init__(self, owner_id: int, group_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.secondary,
                emoji="✖️",
                custom_id=f"{CANCEL_PREFIX}:{owner_id}:{group_id}",
            )
        )
        self.owner_id = owner_id
        self.group_id = group_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["owner"]), match["group"])

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await owner_only(interaction, self.owner_id, f"Only <@{self.owner_id}> can cancel this song.")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await hand_to_cog(
            interaction,
            cog_name=COG_NAME,
            unavailable="Songs are not available right now; try again soon.",
            where=f"Song button {self.custom_id}",
            action=lambda cog: cog.cancel_pressed(interaction, self),
        )


def cancel_view(owner_id: int, group_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(owner_id, group_id))
    return view
