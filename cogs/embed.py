"""/embed send: admins post a send-data message to a channel of their server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import require_manage_guild, server_only
from bot.discordkit.responses import reply
from bot.discordkit.send_data_post import PostOrigin, post_send_data

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)


@server_only()
@app_commands.default_permissions(manage_guild=True)
class Embed(commands.GroupCog, name="Embeds", group_name="embed", group_description="Post rich messages."):
    """Rich messages from the send-data schema."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Concord], /) -> bool:  # type: ignore[override]
        require_manage_guild(interaction)
        return True

    @app_commands.command(
        name="send", description="Post a message from send-data JSON (content, embeds, buttons)."
    )
    @app_commands.describe(
        channel="Where to post.",
        json='The payload, e.g. {"content": "Hi", "embeds": [{"title": "News", "description": "..."}]}',
    )
    async def send(
        self,
        interaction: discord.Interaction[Concord],
        channel: discord.TextChannel,
        json: app_commands.Range[str, 2, 6000],
    ) -> None:
        assert interaction.guild_id is not None
        # The post waits its turn in the channel's write budget, which may take longer than the 3 s an
        # interaction has to be answered.
        await interaction.response.defer(ephemeral=True, thinking=True)
        origin = PostOrigin("command", interaction.guild_id, actor_id=interaction.user.id)
        message = await post_send_data(self.bot, json, origin, channel_id=channel.id)
        await reply(interaction, f"Posted in {channel.mention}: {message.jump_url}", ephemeral=True)


async def setup(bot: Concord) -> None:
    await bot.add_cog(Embed(bot))
