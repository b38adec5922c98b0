"""/config: a server's admins set models, capabilities, chat channels, prompts, quota plans and API keys."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discordkit.checks import require_manage_guild, server_only
from bot.discordkit.choices import CAPABILITY_CHOICES, MODEL_SETTING_CHOICES
from bot.discordkit.embeds import result_embed
from bot.discordkit.responses import reply
from bot.discordkit.tree import explain
from bot.errors import InvalidInput
from bot.providers.errors import CapabilityUnavailable, ProviderUnavailable
from bot.providers.profiles import VOICES
from bot.providers.types import ModelKind
from bot.services.guild_config import CAPABILITIES, GuildConfig
from bot.services.model_catalog import fuzzy_matches
from bot.services.quotas import parse_custom_limits
from bot.services.tts_settings import message_content_note

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

CONFIG_COLOUR = 0x5865F2
# Which provider model lists hold the models of each setting.
LIST_KINDS: dict[str, tuple[ModelKind, ...]] = {
    "chat": ("chat",),
    "image": ("imagine", "flux"),
    "vision": ("vision",),
}
PROMPT_MODAL_ID = "concord:config:prompt"


def _when(moment: datetime) -> str:
    return discord.utils.format_dt(moment, "R")


def describe_plan(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts = [
            f"{feature}.{window}={'-' if cap is None else cap}"
            for feature, windows in value.items()
            for window, cap in windows.items()
        ]
        return "custom: " + " ".join(parts)
    return str(value)


def describe_chat_channels(settings: GuildConfig) -> str:
    """Where chat answers mentions and where /chat works, as GuildConfig.chat_answers_in decides it."""

    def channels(ids: frozenset[int]) -> str:
        return " ".join(f"<#{c}>" for c in sorted(ids))

    if not settings.is_enabled("chat"):
        return "Switched off in this server: mentions are ignored and /chat is refused."
    if settings.chat_all_channels:
        lines = ["Answers mentions and replies in every channel."]
    elif settings.chat_channel_ids:
        lines = [
            f"Answers mentions and replies only in {channels(settings.chat_channel_ids)} (and their threads)."
        ]
    else:
        lines = ["Answers mentions and replies in no channel (none chosen with /config chat-channel)."]
    if settings.chat_off_channel_ids:
        lines.append(f"Switched off in {channels(settings.chat_off_channel_ids)}: no mentions, no /chat.")
        lines.append("/chat works in every other channel.")
    else:
        lines.append("/chat works in every channel.")
    return "\n".join(lines)


class SystemPromptModal(discord.ui.Modal):
    """Long text wants a modal: a slash-command option is a single line."""

    def __init__(self, cog: Config, channel: discord.abc.GuildChannel, current: str | None) -> None:
        super().__init__(
            title=f"System prompt for #{channel.name}"[:45], custom_id=PROMPT_MODAL_ID, timeout=600
        )
        self.cog = cog
        self.channel = channel
        self.prompt: discord.ui.TextInput[SystemPromptModal] = discord.ui.TextInput(
            label="Persona / system prompt (empty clears it)",
            style=discord.TextStyle.paragraph,
            default=current or "",
            required=False,
            max_length=4000,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Concord]) -> None:  # type: ignore[override]
        require_manage_guild(interaction)
        assert interaction.guild_id is not None
        text = self.prompt.value
        await self.cog.config.set_system_prompt(
            interaction.guild_id,
            interaction.user.id,
            self.channel.id,
            text,
            channel_guild_id=self.channel.guild.id,
        )
        shown = "cleared" if not text.strip() else f"set ({len(text.strip())} characters)"
        await reply(interaction, f"System prompt for {self.channel.mention} {shown}.", ephemeral=True)
        await self.cog.log_change(interaction, f"system prompt of {self.channel.mention} {shown}")

    async def on_error(self, interaction: discord.Interaction[Concord], error: Exception) -> None:  # type: ignore[override]
        await reply(interaction, explain(error, where="System prompt form"), ephemeral=True)


@server_only()
@app_commands.default_permissions(manage_guild=True)
class Config(
    commands.GroupCog, name="Server settings", group_name="config", group_description="Server settings."
):
    """Server settings (Manage Server)."""

    apikey = app_commands.Group(name="apikey", description="Keys for the send-data HTTP endpoint.")

    def __init__(self, bot: Concord) -> None:
        self.bot = bot
        self.config = bot.guild_config
        self.keys = bot.api_keys
        self.catalog = bot.catalog
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Concord], /) -> bool:  # type: ignore[override]
        require_manage_guild(interaction)
        return True

    async def known_models(self, setting: str) -> list[str]:
        if setting == "tts":
            return list(VOICES)
        names: list[str] = []
        for kind in LIST_KINDS[setting]:
            try:
                names.extend(m.id for m in await self.bot.providers.list_models(kind))
            except (CapabilityUnavailable, ProviderUnavailable):
                continue
        return names

    async def log_change(self, interaction: discord.Interaction[Concord], what: str) -> None:
        """Tell the guild's log channel, when one is set; never fails the command."""
        if interaction.guild is None:
            return
        try:
            settings = await self.config.get(interaction.guild.id)
            if settings.log_channel_id is None:
                return
            channel = interaction.guild.get_channel(settings.log_channel_id)
            if isinstance(channel, discord.TextChannel):
                text = f"⚙️ {interaction.user.mention} changed {what}."
                await self.bot.write_budget.write(
                    channel.id,
                    lambda: channel.send(text, allowed_mentions=discord.AllowedMentions.none()),
                )
        except discord.HTTPException:
            log.info("Could not post to the log channel of guild %s", interaction.guild.id)

    # --- show / audit ------------------------------------------------------------------------------

    def settings_embed(
        self, guild: discord.Guild, settings: GuildConfig, prompts: dict[int, str], reading: str
    ) -> discord.Embed:
        def channel(cid: int | None) -> str:
            return f"<#{cid}>" if cid else "not set"

        def role(rid: int | None) -> str:
            return f"<@&{rid}>" if rid else "not set"

        default = "bot default"
        models = "\n".join(
            [
                f"Chat: `{settings.chat_model or default}`",
                f"Image: `{settings.image_model or default}`",
                f"Vision: `{settings.vision_model or default}`",
                f"TTS voice: `{settings.tts_voice or default}`",
            ]
        )
        capabilities = " ".join(f"{'✅' if settings.is_enabled(c) else '⛔'} {c}" for c in CAPABILITIES)
        chat_where = describe_chat_channels(settings)
        plans = [
            f"{'@everyone' if int(r) == guild.id else f'<@&{r}>'}: {describe_plan(p)}"
            for r, p in sorted(settings.role_plans.items())
        ]
        quota = "\n".join(
            [
                "@everyone: "
                + (
                    describe_plan(settings.role_plans[str(guild.id)])
                    if str(guild.id) in settings.role_plans
                    else "no server caps (each member's own allowance applies)"
                ),
                *[p for p in plans if not p.startswith("@everyone")],
                f"Bypass role (skips these server caps only): {role(settings.quota_bypass_role_id)}",
            ]
        )
        prompt_lines = [
            f"<#{cid}>: {text[:80]}{'…' if len(text) > 80 else ''}" for cid, text in prompts.items()
        ]
        max_chars = settings.max_input_chars
        return result_embed(
            title=f"Settings of {guild.name}",
            colour=CONFIG_COLOUR,
            fields=[
                ("Models", models, False),
                ("Capabilities", capabilities, False),
                ("Chat", chat_where, False),
                ("System prompts", "\n".join(prompt_lines) or "none (bot default)", False),
                ("Max input characters", str(max_chars) if max_chars else "plan default", True),
                ("Log channel", channel(settings.log_channel_id), True),
                ("TTS reading mode", reading, False),
                ("Server caps (they only tighten members' own allowances)", quota, False),
            ],
            footer="Change these with /config …; every change is in /config audit.",
        )

    @app_commands.command(name="show", description="Show this server's effective settings.")
    async def show(self, interaction: discord.Interaction[Concord]) -> None:
        assert interaction.guild is not None
        settings = await self.config.get(interaction.guild.id)
        prompts: dict[int, str] = {}
        for channel in interaction.guild.text_channels:
            current = await self.config.channel(channel.id)
            if current.system_prompt:
                prompts[channel.id] = current.system_prompt
        mode = await self.bot.tts_settings.reading(interaction.guild.id)
        reading = f"reads <#{mode.channel_id}> while in voice" if mode else "off (`/tts reading set`)"
        note = message_content_note(self.bot.settings.message_content_intent)
        if note is not None:
            reading += f"\n⚠️ {note}"
        embed = self.settings_embed(interaction.guild, settings, prompts, reading)
        await reply(interaction, embed=embed, ephemeral=True)

    @app_commands.command(name="audit", description="Who changed which setting, and when.")
    @app_commands.describe(limit="How many recent changes to show (default 15).")
    async def audit(
        self, interaction: discord.Interaction[Concord], limit: app_commands.Range[int, 1, 25] = 15
    ) -> None:
        assert interaction.guild_id is not None
        entries = await self.config.audit(interaction.guild_id, limit)
        if not entries:
            await reply(interaction, "No setting has been changed yet.", ephemeral=True)
            return
        lines = []
        for entry in entries:
            channelish = "channel" in entry.setting or entry.setting == "system_prompt"
            target = f" ({'<#' if channelish else '<@&'}{entry.target_id}>)" if entry.target_id else ""
            old = (entry.old_value or "∅")[:60]
            new = (entry.new_value or "∅")[:60]
            lines.append(
                f"{_when(entry.created_at)} <@{entry.actor_id}> **{entry.setting}**{target}: "
                f"`{old}` → `{new}`"
            )
        await reply(
            interaction,
            embed=result_embed(title="Settings changes", description="\n".join(lines), colour=CONFIG_COLOUR),
            ephemeral=True,
        )

    # --- settings -------------------------------------------------------------------------------------

    @app_commands.command(name="model", description="Set the server's default model (or TTS voice).")
    @app_commands.describe(
        kind="Which default to set.", name="Model id; leave empty to use the bot's default."
    )
    @app_commands.choices(kind=MODEL_SETTING_CHOICES)
    async def model(
        self,
        interaction: discord.Interaction[Concord],
        kind: app_commands.Choice[str],
        name: str | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        setting = kind.value
        await interaction.response.defer(ephemeral=True, thinking=True)
        known = await self.known_models(setting) if name else []
        await self.config.set_model(interaction.guild_id, interaction.user.id, setting, name, known=known)
        settings = await self.config.get(interaction.guild_id)
        value = {
            "chat": settings.chat_model,
            "image": settings.image_model,
            "vision": settings.vision_model,
            "tts": settings.tts_voice,
        }[setting]
        await reply(
            interaction,
            f"Default {setting} {'voice' if setting == 'tts' else 'model'}: `{value or 'bot default'}`.",
        )
        await self.log_change(interaction, f"the default {setting} model to `{value or 'bot default'}`")

    @model.autocomplete("name")
    async def model_autocomplete(
        self, interaction: discord.Interaction[Concord], current: str
    ) -> list[app_commands.Choice[str]]:
        kind = getattr(interaction.namespace, "kind", "chat")
        if kind == "tts":
            names = fuzzy_matches(current, VOICES)
        else:
            candidates: list[str] = []
            for list_kind in LIST_KINDS.get(kind, ("chat",)):
                candidates.extend(self.catalog.matches(current, list_kind))
            names = fuzzy_matches(current, dict.fromkeys(candidates))
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names[:25]]

    @app_commands.command(name="capability", description="Switch a capability on or off in this server.")
    @app_commands.choices(name=CAPABILITY_CHOICES)
    async def capability(
        self, interaction: discord.Interaction[Concord], name: app_commands.Choice[str], enabled: bool
    ) -> None:
        assert interaction.guild_id is not None
        capability = name.value
        await self.config.set_capability(interaction.guild_id, interaction.user.id, capability, enabled)
        state = "on" if enabled else "off"
        await reply(interaction, f"{capability} is now {state} in this server.", ephemeral=True)
        await self.log_change(interaction, f"{capability} to {state}")

    @app_commands.command(
        name="chat-everywhere", description="Answer mentions in every channel, or only in chosen ones."
    )
    async def chat_everywhere(self, interaction: discord.Interaction[Concord], enabled: bool) -> None:
        assert interaction.guild_id is not None
        await self.config.set_chat_all_channels(interaction.guild_id, interaction.user.id, enabled)
        where = (
            "every channel (except channels switched off with /config chat-channel)"
            if enabled
            else "only the channels switched on with /config chat-channel; /chat still works everywhere"
        )
        await reply(interaction, f"Chat now answers mentions in {where}.", ephemeral=True)
        await self.log_change(interaction, f"chat-everywhere to {enabled}")

    @app_commands.command(
        name="chat-channel",
        description="Switch chat on in a channel (answers mentions) or off (no chat at all).",
    )
    async def chat_channel(
        self, interaction: discord.Interaction[Concord], channel: discord.TextChannel, enabled: bool
    ) -> None:
        assert interaction.guild_id is not None
        await self.config.set_chat_channel(
            interaction.guild_id, interaction.user.id, channel.id, enabled, channel_guild_id=channel.guild.id
        )
        shown = (
            f"Chat answers mentions in {channel.mention}."
            if enabled
            else f"Chat is off in {channel.mention}: mentions there are ignored and /chat is refused."
        )
        await reply(interaction, shown, ephemeral=True)
        await self.log_change(interaction, f"chat in {channel.mention} to {enabled}")

    @app_commands.command(
        name="prompt", description="Set a channel's persona / system prompt (opens a form)."
    )
    async def prompt(self, interaction: discord.Interaction[Concord], channel: discord.TextChannel) -> None:
        current = await self.config.channel(channel.id)
        await interaction.response.send_modal(SystemPromptModal(self, channel, current.system_prompt))

    @app_commands.command(
        name="max-input", description="Longest message users may send to the models (0: plan default)."
    )
    async def max_input(
        self, interaction: discord.Interaction[Concord], characters: app_commands.Range[int, 0, 100_000]
    ) -> None:
        assert interaction.guild_id is not None
        await self.config.set_max_input_chars(interaction.guild_id, interaction.user.id, characters or None)
        shown = str(characters) if characters else "the plan default"
        await reply(interaction, f"Max input characters: {shown}.", ephemeral=True)
        await self.log_change(interaction, f"max input characters to {shown}")

    @app_commands.command(name="plan", description="Give a role this server's own caps (@everyone: default).")
    @app_commands.describe(
        plan="free or premium (the standard numbers), custom (give limits), or remove.",
        limits="For custom: e.g. `llm.minute=5 llm.day=100 imagine.day=-` (- means no limit).",
    )
    async def plan(
        self,
        interaction: discord.Interaction[Concord],
        role: discord.Role,
        plan: Literal["free", "premium", "custom", "remove"],
        limits: str | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        value: str | dict[str, Any] | None
        if plan == "custom":
            if not limits:
                raise InvalidInput("Give the custom numbers in `limits`, e.g. `llm.minute=5 llm.day=100`.")
            value = parse_custom_limits(limits)
        else:
            value = None if plan == "remove" else plan
        await self.config.set_role_plan(
            interaction.guild_id, interaction.user.id, role.id, value, role_guild_id=role.guild.id
        )
        shown = "no plan" if value is None else describe_plan(value)
        await reply(interaction, f"{role.mention}: {shown}.", ephemeral=True)
        await self.log_change(interaction, f"the quota plan of {role.mention} to {shown}")

    @app_commands.command(
        name="bypass-role", description="The role whose members have no quota (empty clears)."
    )
    async def bypass_role(
        self, interaction: discord.Interaction[Concord], role: discord.Role | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.config.set_bypass_role(
            interaction.guild_id,
            interaction.user.id,
            role.id if role else None,
            role_guild_id=role.guild.id if role else None,
        )
        shown = role.mention if role else "none"
        await reply(interaction, f"Quota bypass role: {shown}.", ephemeral=True)
        await self.log_change(interaction, f"the quota bypass role to {shown}")

    @app_commands.command(
        name="log-channel", description="Where setting changes are announced (empty clears)."
    )
    async def log_channel(
        self, interaction: discord.Interaction[Concord], channel: discord.TextChannel | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.config.set_log_channel(
            interaction.guild_id,
            interaction.user.id,
            channel.id if channel else None,
            channel_guild_id=channel.guild.id if channel else None,
        )
        shown = channel.mention if channel else "none"
        await reply(interaction, f"Log channel: {shown}.", ephemeral=True)
        await self.log_change(interaction, f"the log channel to {shown}")

    # --- API keys --------------------------------------------------------------------------------------

    @apikey.command(name="create", description="Create a key for POST /send-data (shown once).")
    async def apikey_create(
        self, interaction: discord.Interaction[Concord], name: app_commands.Range[str, 1, 100]
    ) -> None:
        assert interaction.guild_id is not None
        created = await self.keys.create(interaction.guild_id, name, interaction.user.id)
        await reply(
            interaction,
            f"Key **{created.name}** (id {created.id}) for this server; copy it now, it is not shown again:\n"
            f"```\n{created.key}\n```Use it as `Authorization: Bearer <key>` on `POST /send-data`.",
            ephemeral=True,
        )
        await self.log_change(interaction, f"API keys (created `{created.prefix}…`, id {created.id})")

    @apikey.command(name="list", description="This server's active keys.")
    async def apikey_list(self, interaction: discord.Interaction[Concord]) -> None:
        assert interaction.guild_id is not None
        keys = await self.keys.list(interaction.guild_id)
        if not keys:
            await reply(interaction, "This server has no active API keys.", ephemeral=True)
            return
        lines = [
            f"`{k.id}` **{k.name}** `{k.prefix}…` by <@{k.created_by}> {_when(k.created_at)}"
            f" · last used {_when(k.last_used_at) if k.last_used_at else 'never'}"
            for k in keys
        ]
        await reply(
            interaction,
            embed=result_embed(title="API keys", description="\n".join(lines), colour=CONFIG_COLOUR),
            ephemeral=True,
        )

    @apikey.command(name="revoke", description="Revoke a key; posts with it are refused from now on.")
    async def apikey_revoke(self, interaction: discord.Interaction[Concord], key_id: int) -> None:
        assert interaction.guild_id is not None
        revoked = await self.keys.revoke(interaction.guild_id, key_id)
        await reply(interaction, f"Revoked key {revoked.id} (**{revoked.name}**).", ephemeral=True)
        await self.log_change(interaction, f"API keys (revoked id {revoked.id})")


async def setup(bot: Concord) -> None:
    await bot.add_cog(Config(bot))
