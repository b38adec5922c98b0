"""/embed send: admins post a send-data message to a channel of their server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import require_manage_guild, server_only
from bot.discordkit.embeds import message_kwargs
from bot.discordkit.responses import reply
from bot.errors import ConcordError
from bot.services.send_data import SendDataInvalid, parse_payload_text

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)


@server_only()
@app_commands.default_permissions(manage_guild=True)
class Embed(commands.GroupCog, name="Embeds", group_name="embed", group_description="Post rich messages."):
    """Rich messages from the send-data schema."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.audit = bot.send_audit
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
        guild_id, actor_id = interaction.guild_id, interaction.user.id

        async def audit(status: int, detail: str, message_id: int | None = None) -> None:
            await self.audit.record(
                source="command",
                status=status,
                detail=detail,
                actor_id=actor_id,
                guild_id=guild_id,
                channel_id=channel.id,
                message_id=message_id,
            )

        try:
            payload = parse_payload_text(json, require_channel=False)
        except SendDataInvalid as exc:
            await audit(400, exc.user_message)
            raise
        if payload.channel_snowflake not in (None, channel.id):
            await audit(400, "channelId differs from the channel option")
            raise ConcordError(
                "The JSON's `channelId` names another channel; leave it out or make them match."
            )
        try:
            message = await channel.send(**message_kwargs(payload))
        except discord.Forbidden:
            await audit(403, "bot forbidden")
            raise ConcordError(f"I'm not allowed to post in {channel.mention}.") from None
        await audit(200, "posted", message.id)
        await reply(interaction, f"Posted in {channel.mention}: {message.jump_url}", ephemeral=True)


async def setup(bot: Concord) -> None:
    await bot.add_cog(Embed(bot))
