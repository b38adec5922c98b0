"""Meta commands every user has: /help and /ping."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.embeds import result_embed
from bot.store.engine import ping as ping_database

if TYPE_CHECKING:
    from bot.app import Concord

HELP_COLOUR = discord.Colour.blurple()


def _caller_may_use(
    command: app_commands.Command[Any, ..., Any] | app_commands.Group,
    interaction: discord.Interaction[Concord],
    is_owner: bool,
) -> bool:
    if command.extras.get("owner_only") and not is_owner:
        return False
    in_guild = interaction.guild is not None
    contexts = command.allowed_contexts
    if not in_guild and (
        command.guild_only or (contexts is not None and contexts.guild and not contexts.dm_channel)
    ):
        return False
    required = command.default_permissions
    return not (in_guild and required is not None and not interaction.permissions >= required)


class Meta(commands.Cog, name="General"):
    """Help and health checks."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot

    def _capability_of_each_command(self) -> dict[str, str]:
        """Top-level command name -> the cog (capability) that defines it."""
        owners: dict[str, str] = {}
        for cog in self.bot.cogs.values():
            if cog.app_command is not None:  # a GroupCog is one top-level group
                owners[cog.app_command.name] = cog.qualified_name
            else:
                owners.update((command.name, cog.qualified_name) for command in cog.get_app_commands())
        return owners

    @app_commands.command(name="help", description="List the commands you can use here.")
    async def help(self, interaction: discord.Interaction[Concord]) -> None:
        is_owner = await self.bot.is_owner(interaction.user)
        capabilities = self._capability_of_each_command()
        groups: dict[str, list[str]] = defaultdict(list)
        for command in self.bot.tree.get_commands(type=discord.AppCommandType.chat_input):
            assert isinstance(command, app_commands.Command | app_commands.Group)
            if not _caller_may_use(command, interaction, is_owner):
                continue
            capability = capabilities.get(command.name, "Other")
            groups[capability].append(f"`/{command.qualified_name}` — {command.description}")
        embed = result_embed(
            title="Concord commands",
            description=None if groups else "There are no commands you can use here.",
            colour=HELP_COLOUR,
            fields=[
                (capability, "\n".join(sorted(groups[capability])), False) for capability in sorted(groups)
            ],
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="ping", description="Show the bot's gateway and database latency.")
    async def ping(self, interaction: discord.Interaction[Concord]) -> None:
        gateway_ms = self.bot.latency * 1000
        database_ms = await ping_database(self.bot.db_engine)
        gateway = (
            "unknown yet" if math.isnan(gateway_ms) or math.isinf(gateway_ms) else f"{gateway_ms:.0f} ms"
        )
        await interaction.response.send_message(
            f"Pong! Gateway: {gateway} · Database: {database_ms:.1f} ms", ephemeral=True
        )


async def setup(bot: Concord) -> None:
    await bot.add_cog(Meta(bot))
