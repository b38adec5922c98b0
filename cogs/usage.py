"""/usage: remaining allowance per feature and window; admins can look up and reset a member."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.discordkit.checks import require_manage_guild, role_ids, server_only
from bot.discordkit.choices import FEATURE_CHOICES
from bot.discordkit.embeds import result_embed
from bot.discordkit.responses import reply
from bot.errors import InvalidInput
from bot.services.quotas import FEATURE_LABELS, Feature, QuotaService, UsageReport, WindowReport

if TYPE_CHECKING:
    from bot.app import Concord

USAGE_COLOUR = 0x57F287
BAR_CELLS = 8
PRUNE_FIRST_DELAY = 300.0


def bar(window: WindowReport) -> str:
    """Remaining allowance as a bar: full means everything is left."""
    assert window.cap is not None and window.remaining is not None
    filled = (
        BAR_CELLS
        if window.cap == 0 and window.remaining
        else round(BAR_CELLS * window.remaining / max(window.cap, 1))
    )
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def _window_lines(windows: tuple[WindowReport, ...], prefix: str = "") -> list[str]:
    lines = []
    for window in windows:
        if window.cap is None:
            continue
        resets = f" · resets <t:{int(window.resets_at)}:R>" if window.used else ""
        lines.append(
            f"{prefix}{window.window.value:<6} {bar(window)} {window.remaining}/{window.cap}{resets}"
        )
    return lines


def usage_embed(subject: discord.abc.User, report: UsageReport) -> discord.Embed:
    """Remaining allowance per feature: the user's own (every server and DM), then this server's caps."""
    server = {f.feature: f.windows for f in report.server_features}
    fields = []
    for feature in report.features:
        lines = _window_lines(feature.windows) or ["no limit"]
        lines += _window_lines(server.get(feature.feature, ()), prefix="here: ")
        fields.append((FEATURE_LABELS[feature.feature], "\n".join(lines), True))
    here = (
        f" This server also sets its own caps (**{report.server_plan.name}**), counted here only (`here:`)."
        if report.server_plan is not None
        else ""
    )
    return result_embed(
        title=f"Usage of {subject.display_name}",
        description=f"Plan: **{report.plan.name}**, shared by every server and DM.{here}",
        colour=USAGE_COLOUR,
        fields=fields,
    )


class Usage(commands.Cog, name="Usage"):
    """Your remaining allowance."""

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.quotas: QuotaService = bot.quotas

    async def cog_load(self) -> None:
        self.prune.start()

    async def cog_unload(self) -> None:
        self.prune.cancel()

    @tasks.loop(hours=1)
    async def prune(self) -> None:
        # Rows of windows that have ended are never read again.
        await self.quotas.counter.prune()

    @prune.before_loop
    async def _first_prune_later(self) -> None:
        # Not at start-up: a short-lived process (or a test) should not be cancelled mid-statement.
        await asyncio.sleep(PRUNE_FIRST_DELAY)

    @staticmethod
    async def _member(guild: discord.Guild, user: discord.abc.User) -> discord.Member:
        """The user as a member of this server (their roles decide its caps), or InvalidInput."""
        if isinstance(user, discord.Member) and user.guild.id == guild.id:
            return user
        member = guild.get_member(user.id)
        if member is None:
            try:
                member = await guild.fetch_member(user.id)
            except discord.NotFound:
                raise InvalidInput(f"{user.mention} isn't a member of this server.") from None
        return member

    @app_commands.command(name="usage", description="Show your remaining allowance per feature.")
    @app_commands.describe(user="Admins: a member's usage in this server.")
    async def usage(
        self, interaction: discord.Interaction[Concord], user: discord.User | None = None
    ) -> None:
        subject = user or interaction.user
        member: discord.abc.User = subject
        if subject.id != interaction.user.id:
            # An admin sees a member of their own server: their use here, and what is left of their own
            # allowance; never where else they used it.
            require_manage_guild(interaction)
            assert interaction.guild is not None
            member = await self._member(interaction.guild, subject)
        elif interaction.guild is not None and not isinstance(subject, discord.Member):
            member = interaction.guild.get_member(subject.id) or subject
        report = await self.quotas.report(
            subject.id, guild_id=interaction.guild_id, role_ids=role_ids(member)
        )
        await reply(interaction, embed=usage_embed(subject, report), ephemeral=True)

    @app_commands.command(
        name="usage-reset", description="Give a member back their allowance of this server's own caps."
    )
    @app_commands.describe(feature="Only this feature (default: all).")
    @app_commands.choices(feature=FEATURE_CHOICES)
    @server_only()
    @app_commands.default_permissions(manage_guild=True)
    async def usage_reset(
        self,
        interaction: discord.Interaction[Concord],
        user: discord.User,
        feature: app_commands.Choice[str] | None = None,
    ) -> None:
        require_manage_guild(interaction)
        assert interaction.guild_id is not None
        chosen = Feature(feature.value) if feature else None
        # Only this server's counters: the user's own allowance is the operator's (`/owner usage-reset`).
        await self.quotas.reset(user.id, chosen, scope=interaction.guild_id)
        what = FEATURE_LABELS[chosen].lower() if chosen else "every feature"
        await reply(
            interaction,
            f"Reset {user.mention}'s usage of {what} in this server. Their own allowance, shared by every "
            "server and DM, is unchanged.",
            ephemeral=True,
        )


async def setup(bot: Concord) -> None:
    await bot.add_cog(Usage(bot))
