"""Presses on persistent buttons: only the requester may press, and every press gets an answer.

A persistent button (a `DynamicItem`) only parses its custom_id; the cog that owns it does the work. These
two helpers are the checks and the hand-over every such button shares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.discordkit.responses import reply
from bot.discordkit.tree import explain


async def owner_only(interaction: discord.Interaction[Any], owner_id: int, refusal: str) -> bool:
    """True for the requester; anyone else is told `refusal`, privately (it may name them with <@id>)."""
    if interaction.user.id == owner_id:
        return True
    await interaction.response.send_message(
        refusal, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
    )
    return False


async def hand_to_cog(
    interaction: discord.Interaction[Any],
    *,
    cog_name: str,
    unavailable: str,
    where: str,
    action: Callable[[Any], Awaitable[None]],
) -> None:
    """Run `action` on the cog named `cog_name`; whatever happens, the presser gets an answer: `unavailable`
    when the cog is not loaded (e.g. mid-reload), one explained sentence when the action fails."""
    cog = interaction.client.get_cog(cog_name)
    if cog is None:
        await reply(interaction, unavailable, ephemeral=True)
        return
    try:
        await action(cog)
    except Exception as exc:
        # discord.py only logs what a dynamic item's callback raises; the user gets one sentence instead.
        message = explain(exc, where=f"{where} (user {interaction.user.id})")
        with contextlib.suppress(discord.HTTPException):
            await reply(interaction, message, ephemeral=True)
