"""The command tree: every slash-command error ends here and becomes one short, safe sentence."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands

from bot.discordkit.responses import reply
from bot.errors import ConcordError

log = logging.getLogger(__name__)


def _permission_names(names: list[str]) -> str:
    return ", ".join(name.replace("_", " ").replace("guild", "server").title() for name in names)


def describe_error(error: app_commands.AppCommandError) -> str | None:
    """Map a known error to the sentence the user sees; None means unexpected (log it)."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(original, ConcordError):
        return original.user_message
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server, not in DMs."
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need the {_permission_names(error.missing_permissions)} permission to use this."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need the {_permission_names(error.missing_permissions)} permission here to do that."
    if isinstance(error, app_commands.MissingRole | app_commands.MissingAnyRole):
        return "You don't have the role this command requires."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.TransformerError):
        return f"That value for {error.type.name.lower()} isn't valid: {str(error.value)[:100]!r}."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "This command is out of date; it will work again once the bot's commands are re-synced."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    return None


def describe_discord_error(error: BaseException) -> str | None:
    """Discord refusing or failing a call the bot made: expected now and then, explained, not a bug."""
    if isinstance(error, discord.Forbidden):
        return "Discord refused that: I'm missing a permission here."
    if isinstance(error, discord.DiscordServerError):
        return "Discord is having trouble right now; please try again in a moment."
    return None


def explain(error: BaseException, *, where: str) -> str:
    """The one sentence a user sees for `error`, from a command, a button, a form or a chat message.

    Anything unexpected is logged with a correlation id, and the user sees only that id.
    """
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(error, app_commands.AppCommandError):
        known = describe_error(error)
    else:
        known = error.user_message if isinstance(error, ConcordError) else None
    if known is None and (known := describe_discord_error(original)) is not None:
        log.warning("%s: %s", where, original)
    if known is not None:
        return known
    correlation_id = secrets.token_hex(4)
    log.error("%s failed [%s]", where, correlation_id, exc_info=error)
    return f"Something went wrong on our side. If it keeps happening, quote error id `{correlation_id}`."


class ConcordTree(app_commands.CommandTree[Any]):
    """Owns error handling for every app command."""

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        where = f"Command /{command} (user {interaction.user.id}, guild {interaction.guild_id})"
        message = explain(error, where=where)
        try:
            await reply(interaction, message, ephemeral=True)
        except discord.HTTPException:
            log.warning(
                "Could not deliver an error message for interaction %s", interaction.id, exc_info=True
            )
