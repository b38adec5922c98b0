"""A test-only extension: commands that exercise the tree's permission filtering and error handling."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import server_only
from bot.errors import InvalidInput


class Samples(commands.Cog, name="Samples"):
    """Commands that only tests load."""

    @app_commands.command(name="boom", description="Fails with an unexpected error.")
    async def boom(self, interaction: discord.Interaction) -> None:
        raise RuntimeError("kaboom: internal detail that users must not see")

    @app_commands.command(name="late-boom", description="Defers, then fails.")
    async def late_boom(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        raise RuntimeError("late kaboom")

    @app_commands.command(name="refuse", description="Fails with a message meant for the user.")
    async def refuse(self, interaction: discord.Interaction) -> None:
        raise InvalidInput("That prompt is too long: the limit is 1000 characters.")

    @app_commands.command(name="admin-only", description="Needs Manage Server.")
    @server_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def admin_only(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("admin ok", ephemeral=True)

    @app_commands.command(name="owner-only", description="Only for owners.", extras={"owner_only": True})
    async def owner_only(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("owner ok", ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Samples())
