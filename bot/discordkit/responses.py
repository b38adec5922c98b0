"""One helper that answers an interaction whatever state it is in."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord

log = logging.getLogger(__name__)


async def reply(
    interaction: discord.Interaction[Any],
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    ephemeral: bool = True,
    view: discord.ui.View | None = None,
) -> None:
    """Send to the user: the initial response, else a followup, else (token expired) the channel.

    Ephemeral messages cannot fall back to the channel: that would show a private message to everyone.
    """
    kwargs: dict[str, Any] = {"content": content}
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if not interaction.response.is_done():
        await interaction.response.send_message(ephemeral=ephemeral, **kwargs)
        return
    if not interaction.is_expired():
        await interaction.followup.send(ephemeral=ephemeral, **kwargs)
        return
    if ephemeral:
        log.info("Dropped an ephemeral reply: interaction %s expired", interaction.id)
        return
    channel = interaction.channel
    if isinstance(channel, discord.abc.Messageable) and channel.id is not None:
        # A channel write like any other: through the bot's write budget for that channel.
        budget = interaction.client.write_budget
        await budget.write(channel.id, lambda: channel.send(**kwargs))


@contextlib.asynccontextmanager
async def refusals_stay_private(interaction: discord.Interaction[Any]) -> AsyncIterator[None]:
    """For the checks a command makes after a public defer (quota, input limits): an error inside takes
    the public "thinking…" message away, so the explanation the error handler then sends is a new,
    ephemeral message that only the user sees. The defer can come first, and acknowledge at once."""
    try:
        yield
    except Exception:
        if interaction.response.is_done() and not interaction.is_expired():
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        raise
