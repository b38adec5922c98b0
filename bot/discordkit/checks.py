"""Run-time permission checks and the quota reservation helper that every capability cog shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.services.quotas import Feature, QuotaService, Reservation

T = TypeVar("T")


def server_only() -> Callable[[T], T]:
    """Offer a command in servers only.

    `guild_only()` alone is not enough: the tree's default contexts (servers, DMs, private channels)
    fill in the contexts it leaves unset, so DMs must be switched off explicitly too.
    """

    def decorate(command: T) -> T:
        command = app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)(command)
        return app_commands.guild_only()(command)

    return decorate


class NotOwner(app_commands.CheckFailure):
    """Only the bot's owners may use this command."""


def require_manage_guild(interaction: discord.Interaction[Any]) -> None:
    """The run-time half of an admin command: `default_permissions` is only a hint admins can change."""
    if interaction.guild is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.permissions.manage_guild:
        raise app_commands.MissingPermissions(["manage_guild"])


def role_ids(user: discord.abc.User) -> list[int]:
    """The caller's role ids in this guild (the @everyone role included); none in DMs."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


def reserve_quota(
    quotas: QuotaService, interaction: discord.Interaction[Any], feature: Feature, *, units: int = 1
) -> Reservation:
    """Quota for one provider call made for this interaction's user (see QuotaService.reserve)."""
    return quotas.reserve(
        interaction.user.id,
        feature,
        guild_id=interaction.guild_id,
        role_ids=role_ids(interaction.user),
        units=units,
    )


def reserve_quota_for_message(
    quotas: QuotaService, message: discord.Message, feature: Feature, *, units: int = 1
) -> Reservation:
    """The same for a provider call answering a message (e.g. a chat mention)."""
    guild_id = message.guild.id if message.guild else None
    return quotas.reserve(
        message.author.id, feature, guild_id=guild_id, role_ids=role_ids(message.author), units=units
    )
