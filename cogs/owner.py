"""/owner: sync commands, reload a cog, and stats (guilds, latency, failed cogs, provider key usage)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy import func, select

from bot.discordkit.checks import NotOwner
from bot.discordkit.choices import FEATURE_CHOICES
from bot.discordkit.embeds import result_embed
from bot.discordkit.responses import reply
from bot.errors import ConcordError, InvalidInput
from bot.providers.types import Capability, KeyUsage
from bot.services.plan_grants import SubjectType, parse_expiry
from bot.services.quotas import FEATURE_LABELS, GLOBAL_SCOPE, Feature
from bot.store.models import ApiKey, QuotaUsage, SendDataAudit

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

OWNER_COLOUR = 0xFEE75C
# A `/check` answer field whose dotted name has one of these parts holds a credential, at any depth.
SECRET_FIELD_PARTS = ("key", "token", "secret", "password", "auth")


def is_secret_field(name: str) -> bool:
    """`account.api_key`, `keys.0.token`, `accessToken`: any part naming a credential."""
    return any(part in segment.lower() for segment in name.split(".") for part in SECRET_FIELD_PARTS)


def snowflake(text: str) -> int:
    """A Discord id typed by hand: ASCII digits, at most 19 of them."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidInput("A server id is a number of up to 19 digits.")
    return int(text)


def usage_lines(usage: KeyUsage, redact: Callable[[str], str], limit: int = 20) -> list[str]:
    """What /owner stats shows of a `/check` answer: credential fields left out, known keys masked."""
    lines = [f"plan: {redact(usage.plan)}"] if usage.plan else []
    shown = [(name, value) for name, value in usage.values.items() if not is_secret_field(name)]
    lines += [f"{name}: {redact(str(value))}" for name, value in shown[:limit]]
    return lines


class Owner(
    commands.GroupCog,
    name="Owner",
    group_name="owner",
    group_description="Bot owner tools.",
    group_extras={"owner_only": True},
):
    """Bot owner tools."""

    grant = app_commands.Group(name="grant", description="Give a user, or everyone in a server, a plan.")
    revoke = app_commands.Group(name="revoke", description="End a user's or a server's granted plan.")

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Concord], /) -> bool:  # type: ignore[override]
        # Owners are OWNER_IDS plus the application's owner; nobody else, whatever permissions say.
        if not await self.bot.is_owner(interaction.user):
            raise NotOwner("Only the bot's owners may use /owner.")
        return True

    @app_commands.command(name="sync", description="Sync slash commands globally, or to one guild.")
    @app_commands.describe(guild_id="A guild id to sync to (instant); empty syncs globally.")
    async def sync(self, interaction: discord.Interaction[Concord], guild_id: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if guild_id:
            if not guild_id.isdigit():
                raise InvalidInput("A guild id is a number.")
            guild = discord.Object(int(guild_id))
            self.bot.tree.copy_global_to(guild=guild)
            synced = await self.bot.tree.sync(guild=guild)
            where = f"to guild {guild_id}"
        else:
            synced = await self.bot.tree.sync()
            where = "globally (may take a while to show)"
        await reply(interaction, f"Synced {len(synced)} commands {where}.")

    @app_commands.command(name="reload", description="Reload one extension (cog) from disk.")
    async def reload(self, interaction: discord.Interaction[Concord], extension: str) -> None:
        if extension not in self.bot.extensions and extension not in self.bot.extensions_to_load:
            raise InvalidInput(f"`{extension[:100]}` is not one of the bot's extensions.")
        try:
            if extension in self.bot.extensions:
                await self.bot.reload_extension(extension)
            else:
                await self.bot.load_extension(extension)
        except commands.ExtensionError as exc:
            log.exception("Reloading %s failed", extension)
            raise ConcordError(
                f"Reloading `{extension}` failed: {type(exc.__cause__ or exc).__name__}."
            ) from None
        self.bot.failed_extensions.pop(extension, None)
        await reply(
            interaction, f"Reloaded `{extension}`. Run `/owner sync` if its commands changed.", ephemeral=True
        )

    @reload.autocomplete("extension")
    async def reload_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        names = sorted({*self.bot.extensions, *self.bot.extensions_to_load})
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]

    # --- the operator's plans ---------------------------------------------------------------------

    async def _grant(
        self,
        interaction: discord.Interaction[Concord],
        subject_type: SubjectType,
        subject_id: int,
        shown: str,
        plan: str,
        expires: str | None,
    ) -> None:
        grants = self.bot.plan_grants
        expires_at = parse_expiry(expires, grants.now())
        await grants.grant(
            subject_type, subject_id, plan, expires_at=expires_at, actor_id=interaction.user.id
        )
        until = f" until {discord.utils.format_dt(expires_at, 'f')}" if expires_at else ""
        await reply(interaction, f"{shown} now has the **{plan}** plan{until}.", ephemeral=True)

    @grant.command(name="user", description="Give one user a global plan (every server and DM).")
    @app_commands.describe(plan="A plan name.", expires="e.g. 30d, 12h, 2w or 2027-01-31; empty: no end.")
    async def grant_user(
        self,
        interaction: discord.Interaction[Concord],
        user: discord.User,
        plan: str,
        expires: str | None = None,
    ) -> None:
        await self._grant(interaction, "user", user.id, user.mention, plan, expires)

    @grant.command(
        name="server", description="Give everyone in a server a global plan while they use it there."
    )
    @app_commands.describe(
        server_id="The server's id.",
        plan="A plan name.",
        expires="e.g. 30d, 12h or 2027-01-31; empty: no end.",
    )
    async def grant_server(
        self,
        interaction: discord.Interaction[Concord],
        server_id: app_commands.Range[str, 1, 20],
        plan: str,
        expires: str | None = None,
    ) -> None:
        await self._grant(interaction, "server", snowflake(server_id), f"Server {server_id}", plan, expires)

    @grant_user.autocomplete("plan")
    @grant_server.autocomplete("plan")
    async def plan_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        names = [n for n in self.bot.quotas.plans if current.lower() in n]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    @revoke.command(name="user", description="End a user's granted plan (back to the default plan).")
    async def revoke_user(self, interaction: discord.Interaction[Concord], user: discord.User) -> None:
        ended = await self.bot.plan_grants.revoke("user", user.id, actor_id=interaction.user.id)
        shown = "ended" if ended else "had no active grant"
        await reply(interaction, f"{user.mention}: grant {shown}.", ephemeral=True)

    @revoke.command(name="server", description="End a server's granted plan.")
    async def revoke_server(
        self, interaction: discord.Interaction[Concord], server_id: app_commands.Range[str, 1, 20]
    ) -> None:
        ended = await self.bot.plan_grants.revoke(
            "server", snowflake(server_id), actor_id=interaction.user.id
        )
        shown = "ended" if ended else "had no active grant"
        await reply(interaction, f"Server {server_id}: grant {shown}.", ephemeral=True)

    @app_commands.command(
        name="usage-reset", description="Give a user their global allowance back (every server and DM)."
    )
    @app_commands.describe(feature="Only this feature (default: all).")
    @app_commands.choices(feature=FEATURE_CHOICES)
    async def usage_reset(
        self,
        interaction: discord.Interaction[Concord],
        user: discord.User,
        feature: app_commands.Choice[str] | None = None,
    ) -> None:
        chosen = Feature(feature.value) if feature else None
        await self.bot.quotas.reset(user.id, chosen, scope=GLOBAL_SCOPE)
        what = FEATURE_LABELS[chosen].lower() if chosen else "every feature"
        await reply(interaction, f"Reset {user.mention}'s global usage of {what}.", ephemeral=True)

    @app_commands.command(
        name="stats", description="Guilds, latency, database counts and provider key usage."
    )
    async def stats(self, interaction: discord.Interaction[Concord]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        latency = self.bot.latency * 1000
        async with self.bot.db_sessions() as session:
            quota_rows = await session.scalar(select(func.count()).select_from(QuotaUsage))
            active_keys = await session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
            )
            posts = await session.scalar(select(func.count()).select_from(SendDataAudit))
        fields = [
            ("Guilds", str(len(self.bot.guilds)), True),
            ("Shards", str(self.bot.shard_count or 1), True),
            (
                "Gateway",
                "unknown" if math.isnan(latency) or math.isinf(latency) else f"{latency:.0f} ms",
                True,
            ),
            ("Quota rows", str(quota_rows), True),
            ("Active API keys", str(active_keys), True),
            ("send-data posts", str(posts), True),
            ("Failed extensions", "\n".join(self.bot.failed_extensions) or "none", False),
        ]
        fields.extend(await self.provider_usage())
        await reply(
            interaction, embed=result_embed(title="Concord stats", colour=OWNER_COLOUR, fields=fields)
        )

    async def provider_usage(self) -> list[tuple[str, str, bool]]:
        """`/check?key=` for every provider whose profile supports it and that has a key."""
        providers = self.bot.providers
        fields = []
        for config in providers.providers:
            if Capability.CHECK not in providers.capabilities(config.name) or config.api_key is None:
                continue
            try:
                usage = await providers.check_key(config.name)
            except ConcordError as exc:
                fields.append((f"Key usage: {config.name}", exc.user_message[:1024], False))
                continue
            lines = usage_lines(usage, providers.redact)
            fields.append((f"Key usage: {config.name}", "\n".join(lines) or "no figures returned", False))
        return fields


async def setup(bot: Concord) -> None:
    await bot.add_cog(Owner(bot))
