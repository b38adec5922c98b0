"""The buttons under an image result: Regenerate, Variations, Edit prompt, Open, Details, Delete, Retry.

They are persistent `DynamicItem`s: the custom_id names the action, the requester and the stored result
(its settings live in the database), so buttons on a message posted before a restart still work. The
Imagine cog registers them when it loads and does the work; a button parses its custom_id and checks who
pressed. Other cogs (vision's "Imagine this") only build views from here.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.discordkit.presses import hand_to_cog, owner_only

PREFIX = "concord:img"
COG_NAME = "Imagine"
UNAVAILABLE = "Image generation is not available right now; try again in a moment."
OWNER_ACTIONS = frozenset({"regen", "var", "edit", "del", "retry", "run"})

_LOOK: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "regen": ("Regenerate", "🔄", discord.ButtonStyle.secondary),
    "var": ("Variations", "🎲", discord.ButtonStyle.secondary),
    "edit": ("Edit prompt", "✏️", discord.ButtonStyle.secondary),
    "info": ("Details", "ℹ️", discord.ButtonStyle.secondary),
    "del": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "retry": ("Retry", "🔁", discord.ButtonStyle.primary),
    "run": ("Imagine this", "🎨", discord.ButtonStyle.primary),
}


class ImageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=(
        rf"{PREFIX}:(?P<action>regen|var|edit|open|info|del|retry|run):"
        r"(?P<owner>[0-9]{1,20}):(?P<result>[0-9]{1,12})(?::(?P<index>[0-9]))?"
    ),
):
    def __init__(self, action: str, owner_id: int, result_id: int, index: int | None = None) -> None:
        custom_id = f"{PREFIX}:{action}:{owner_id}:{result_id}"
        if action == "open":
            assert index is not None
            custom_id += f":{index}"
            button: discord.ui.Button[Any] = discord.ui.Button(
                label=f"Open {index + 1}", style=discord.ButtonStyle.secondary, custom_id=custom_id, row=1
            )
        else:
            label, emoji, style = _LOOK[action]
            button = discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id, row=0)
        super().__init__(button)
        self.action = action
        self.owner_id = owner_id
        self.result_id = result_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ImageButton:
        index = match["index"]
        return cls(match["action"], int(match["owner"]), int(match["result"]), int(index) if index else None)

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if self.action not in OWNER_ACTIONS:
            return True
        if self.action == "del" and interaction.permissions.manage_messages:
            return True
        return await owner_only(interaction, self.owner_id, f"Only <@{self.owner_id}> can use this button.")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await hand_to_cog(
            interaction,
            cog_name=COG_NAME,
            unavailable=UNAVAILABLE,
            where=f"Image button {self.custom_id}",
            action=lambda handler: handler.image_button_pressed(interaction, self),
        )


def result_view(owner_id: int, result_id: int, count: int) -> discord.ui.View:
    """The buttons under a result; a gallery gets one Open button per image on a second row."""
    view = discord.ui.View(timeout=None)
    for action in ("regen", "var", "edit", "info", "del"):
        view.add_item(ImageButton(action, owner_id, result_id))
    if count > 1:
        for index in range(count):
            view.add_item(ImageButton("open", owner_id, result_id, index))
    return view


def single_view(action: str, owner_id: int, result_id: int) -> discord.ui.View:
    """One button: Retry under a failure, "Imagine this" under a suggested prompt."""
    view = discord.ui.View(timeout=None)
    view.add_item(ImageButton(action, owner_id, result_id))
    return view
