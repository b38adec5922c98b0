"""The buttons under a chat reply: Stop while the model writes, Regenerate once it is done.

Both are persistent `DynamicItem`s: the requester and the reply they act on are written into the
custom_id, so a button on a reply written before a restart still gets an answer. The Chat cog registers
them when it loads and does the work; a button only parses its custom_id and checks who pressed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord

from bot.discordkit.presses import hand_to_cog, owner_only

STOP_PREFIX = "concord:chat:stop"
REGENERATE_PREFIX = "concord:chat:regen"
COG_NAME = "Chat"
CHAT_UNAVAILABLE = "Chat is not available right now; try again in a moment."
_KEY = r"[0-9a-f]{1,16}\.[0-9]{1,12}"


class ChatButtonHandler(Protocol):
    """What the buttons need from the Chat cog (looked up through the bot, so nothing here is global)."""

    async def stop_pressed(self, interaction: discord.Interaction[Any], button: StopButton) -> None: ...

    async def regenerate_pressed(
        self, interaction: discord.Interaction[Any], button: RegenerateButton
    ) -> None: ...


async def _owner_only(interaction: discord.Interaction[Any], owner_id: int) -> bool:
    """Only the person who asked may press; everyone else is told so, privately."""
    return await owner_only(interaction, owner_id, f"Only <@{owner_id}> can use these buttons.")


async def _press(
    interaction: discord.Interaction[Any],
    custom_id: str,
    action: Callable[[ChatButtonHandler], Awaitable[None]],
) -> None:
    """Hand a press to the Chat cog; whatever happens, the presser gets an answer."""
    await hand_to_cog(
        interaction,
        cog_name=COG_NAME,
        unavailable=CHAT_UNAVAILABLE,
        where=f"Chat button {custom_id}",
        action=action,
    )


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{STOP_PREFIX}:(?P<owner>[0-9]{{1,20}}):(?P<key>{_KEY})",
):
    """Shown while a reply is being written; `key` names the generation in the cog."""

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
    ) -> StopButton:
        return cls(int(match["owner"]), match["key"])

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _owner_only(interaction, self.owner_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _press(interaction, self.custom_id, lambda handler: handler.stop_pressed(interaction, self))


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=(
        rf"{REGENERATE_PREFIX}:(?P<owner>[0-9]{{1,20}}):"
        rf"(?:(?P<reply>[0-9]{{1,20}})|private-(?P<private>{_KEY}))"
    ),
):
    """Shown under a finished reply. A stored turn is named by its reply's id in the database; a private
    turn (never stored) by a key into the cog's memory, so it cannot outlive a restart."""

    def __init__(self, owner_id: int, *, reply_id: int | None = None, private_key: str | None = None) -> None:
        if (reply_id is None) == (private_key is None):
            raise ValueError("a Regenerate button names either a stored reply or a private turn")
        target = str(reply_id) if reply_id is not None else f"private-{private_key}"
        super().__init__(
            discord.ui.Button(
                label="Regenerate",
                style=discord.ButtonStyle.secondary,
                emoji="🔄",
                custom_id=f"{REGENERATE_PREFIX}:{owner_id}:{target}",
            )
        )
        self.owner_id = owner_id
        self.reply_id = reply_id
        self.private_key = private_key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RegenerateButton:
        reply_id = match["reply"]
        return cls(
            int(match["owner"]),
            reply_id=int(reply_id) if reply_id is not None else None,
            private_key=match["private"],
        )

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _owner_only(interaction, self.owner_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _press(
            interaction, self.custom_id, lambda handler: handler.regenerate_pressed(interaction, self)
        )

    def disable(self) -> None:
        self.item.disabled = True


def buttons(*items: discord.ui.Item[Any]) -> discord.ui.View:
    """A view for a reply's message. No timeout: the buttons are persistent and dispatched by custom_id,
    so this view is never looked up again and nothing has to be disabled when it expires."""
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view
