"""/usage: remaining allowance per feature and window; admins can look up and reset a member."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.discordkit.checks import require_manage_guild, role_ids, server_only
from bot.discordkit.embeds import result_embed
from bot.discordkit.responses import reply
from bot.services.quotas import FEATURE_LABELS, Feature, QuotaService, UsageReport, WindowReport

if TYPE_CHECKING:
    from bot.app import Concord

USAGE_COLOUR = 0x57F287
BAR_CELLS = 8
PRUNE_FIRST_DELAY = 300.0
FeatureName = Literal["llm", "closed_llm", "image", "imagine", "vision", "ask", "songs", "tts"]


def bar(window: WindowReport) -> str:
    """Remaining allowance as a bar: full means everything is left."""
    assert window.cap is not None and window.remaining is not None
    filled = (
        BAR_CELLS
        if window.cap == 0 and window.remaining
        else round(BAR_CELLS * window.remaining / max(window.cap, 1))
    )
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def usage_embed(subject: discord.abc.User, report: UsageReport) -> discord.Embed:
    fields = []
    for feature in report.features:
        lines = []
        for window in feature.windows:
            if window.cap is None:
                continue
            resets = f" · resets <t:{int(window.resets_at)}:R>" if window.used else ""
            lines.append(f"{window.window.value:<6} {bar(window)} {window.remaining}/{window.cap}{resets}")
        fields.append((FEATURE_LABELS[feature.feature], "\n".join(lines) or "no limit", True))
    return result_embed(
        title=f"Usage of {subject.display_name}",
        description=f"Plan here: **{report.plan.name}**. Allowances are shared by every server and DM.",
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

    @app_commands.command(name="usage", description="Show your remaining allowance per feature.")
    @app_commands.describe(user="Admins: someone else's usage.")
    async def usage(
        self, interaction: discord.Interaction[Concord], user: discord.User | None = None
    ) -> None:
        subject = user or interaction.user
        if subject.id != interaction.user.id:
            require_manage_guild(interaction)
        member = subject
        if interaction.guild is not None and not isinstance(subject, discord.Member):
            member = interaction.guild.get_member(subject.id) or subject
        report = await self.quotas.report(
            subject.id, guild_id=interaction.guild_id, role_ids=role_ids(member)
        )
        await reply(interaction, embed=usage_embed(subject, report), ephemeral=True)

    @app_commands.command(name="usage-reset", description="Give a member their whole allowance back.")
    @app_commands.describe(feature="Only this feature (default: all).")
    @server_only()
    @app_commands.default_permissions(manage_guild=True)
    async def usage_reset(
        self,
        interaction: discord.Interaction[Concord],
        user: discord.User,
        feature: FeatureName | None = None,
    ) -> None:
        require_manage_guild(interaction)
        await self.quotas.reset(user.id, Feature(feature) if feature else None)
        what = FEATURE_LABELS[Feature(feature)].lower() if feature else "every feature"
        await reply(interaction, f"Reset {user.mention}'s usage of {what}.", ephemeral=True)


async def setup(bot: Concord) -> None:
    await bot.add_cog(Usage(bot))
