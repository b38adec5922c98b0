"""Guild and channel settings: effective values for the capabilities, validated updates with an audit row."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import FeatureUnavailable, InvalidInput
from bot.services.config_cache import ConfigCache
from bot.services.quotas import SERVER_PLANS
from bot.store.engine import upsert_insert
from bot.store.locks import lock_guild_settings
from bot.store.models import ChannelSettings, ConfigAudit, GuildSettings

# Capabilities a guild can switch off; each capability cog checks its own name. /config's choices
# are built from this tuple (bot/discordkit/choices.py).
CAPABILITIES: tuple[str, ...] = ("chat", "image", "imagine", "vision", "ask", "songs", "tts")
# Which of a guild's default-model settings (not a provider model kind: see bot.providers.types.ModelKind).
ModelSetting = Literal["chat", "image", "vision", "tts"]
MODEL_COLUMNS: dict[ModelSetting, str] = {
    "chat": "chat_model",
    "image": "image_model",
    "vision": "vision_model",
    "tts": "tts_voice",
}
MODEL_SETTINGS: tuple[ModelSetting, ...] = tuple(MODEL_COLUMNS)
# A fresh server answers mentions in every channel; `/config chat-everywhere false` narrows that to the
# channels switched on with `/config chat-channel`.
CHAT_EVERYWHERE_DEFAULT = True
SYSTEM_PROMPT_MAX = 4000
MAX_INPUT_CHARS_LIMIT = 100_000


def chat_refusal(*, capability_on: bool, channel_switch: bool | None) -> str | None:
    """Why chat can't be used in a server channel at all (for /chat), or None when it can."""
    if not capability_on:
        return "Chat is switched off in this server."
    if channel_switch is False:
        return "Chat is switched off in this channel."
    return None


def chat_answers_mentions(*, capability_on: bool, channel_switch: bool | None, all_channels: bool) -> bool:
    """Whether chat answers mentions and replies in a server channel.

    The one rule, decided once: a switched-off capability or channel never answers; a channel switched on
    always does; any other channel follows chat-everywhere (on by default)."""
    if chat_refusal(capability_on=capability_on, channel_switch=channel_switch) is not None:
        return False
    return True if channel_switch else all_channels


def _nearest(*values: bool | None) -> bool | None:
    """The first explicit value: a thread's own setting, else its parent channel's."""
    return next((value for value in values if value is not None), None)


@dataclass(frozen=True)
class GuildConfig:
    """A guild's effective settings; every field has its default when the guild never set it."""

    guild_id: int
    chat_model: str | None = None
    image_model: str | None = None
    vision_model: str | None = None
    tts_voice: str | None = None
    disabled_capabilities: frozenset[str] = frozenset()
    chat_all_channels: bool = CHAT_EVERYWHERE_DEFAULT
    chat_channel_ids: frozenset[int] = frozenset()
    """Channels switched on with /config chat-channel."""
    chat_off_channel_ids: frozenset[int] = frozenset()
    """Channels switched off with /config chat-channel: no chat there at all."""
    max_input_chars: int | None = None
    quota_bypass_role_id: int | None = None
    log_channel_id: int | None = None
    role_plans: Mapping[str, Any] = field(default_factory=dict)

    def is_enabled(self, capability: str) -> bool:
        return capability not in self.disabled_capabilities

    def channel_switch(self, channel_id: int, parent_id: int | None = None) -> bool | None:
        """The channel's chat on/off setting (a thread without one uses its parent's); None: not set."""

        def switch(cid: int | None) -> bool | None:
            if cid in self.chat_channel_ids:
                return True
            return False if cid in self.chat_off_channel_ids else None

        return _nearest(switch(channel_id), switch(parent_id))

    def chat_answers_in(self, channel_id: int, parent_id: int | None = None) -> bool:
        """Whether chat answers mentions and replies in this channel (see `chat_answers_mentions`)."""
        return chat_answers_mentions(
            capability_on=self.is_enabled("chat"),
            channel_switch=self.channel_switch(channel_id, parent_id),
            all_channels=self.chat_all_channels,
        )


@dataclass(frozen=True)
class ChannelChatSettings:
    """What chat uses in one channel: the guild's settings, the channel's own, and for a thread its parent
    channel's where the thread has none. DMs (guild_id None) get the defaults: no server governs them."""

    guild_id: int | None = None
    system_prompt: str | None = None
    model: str | None = None
    max_input_chars: int | None = None
    capability_on: bool = True
    channel_switch: bool | None = None
    all_channels: bool = CHAT_EVERYWHERE_DEFAULT

    def refusal(self) -> str | None:
        """The sentence /chat is refused with here, or None when /chat may run (chat-everywhere aside:
        a slash command is an explicit request)."""
        if self.guild_id is None:
            return None
        return chat_refusal(capability_on=self.capability_on, channel_switch=self.channel_switch)

    @property
    def answers_mentions(self) -> bool:
        """Whether a mention of the bot, or a reply to it, is answered here (always, in a DM)."""
        if self.guild_id is None:
            return True
        return chat_answers_mentions(
            capability_on=self.capability_on,
            channel_switch=self.channel_switch,
            all_channels=self.all_channels,
        )


@dataclass(frozen=True)
class ChannelConfig:
    channel_id: int
    system_prompt: str | None
    chat_enabled: bool | None  # None: not set for this channel
    chat_model: str | None


@dataclass(frozen=True)
class GuildSnapshot:
    """What a guild has stored: its effective settings and its channels' own rows, by channel id."""

    config: GuildConfig
    channels: Mapping[int, ChannelConfig]


_GUILD_COLUMNS = (
    GuildSettings.chat_model,
    GuildSettings.image_model,
    GuildSettings.vision_model,
    GuildSettings.tts_voice,
    GuildSettings.disabled_capabilities,
    GuildSettings.chat_all_channels,
    GuildSettings.max_input_chars,
    GuildSettings.quota_bypass_role_id,
    GuildSettings.log_channel_id,
    GuildSettings.role_plans,
)
_CHANNEL_COLUMNS = (
    ChannelSettings.channel_id,
    ChannelSettings.system_prompt,
    ChannelSettings.chat_enabled,
    ChannelSettings.chat_model,
)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor_id: int
    setting: str
    target_id: int | None
    old_value: str | None
    new_value: str | None
    created_at: Any


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


class GuildConfigService:
    """Reads and writes GuildSettings/ChannelSettings. Every write records who/when/old → new in
    `config_audit` in the same transaction; validation happens before anything is written."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, cache: ConfigCache | None = None
    ) -> None:
        self.sessions = sessions
        self.cache = cache if cache is not None else ConfigCache()
        """A guild's settings and channel rows, kept a few seconds (every write here invalidates it)."""

    # --- reads ---------------------------------------------------------------------------------

    async def snapshot(self, guild_id: int) -> GuildSnapshot:
        """The guild's settings and all its channels' rows, read at most once per cache period."""
        return await self.cache.get(("guild", guild_id), lambda: self._read_snapshot(guild_id))

    async def _read_snapshot(self, guild_id: int) -> GuildSnapshot:
        async with self.sessions() as session:
            row = (
                await session.execute(select(*_GUILD_COLUMNS).where(GuildSettings.guild_id == guild_id))
            ).first()
            channel_rows = (
                await session.execute(select(*_CHANNEL_COLUMNS).where(ChannelSettings.guild_id == guild_id))
            ).all()
        channels = {
            cid: ChannelConfig(cid, prompt, enabled, model) for cid, prompt, enabled, model in channel_rows
        }
        on = frozenset(cid for cid, c in channels.items() if c.chat_enabled)
        off = frozenset(cid for cid, c in channels.items() if c.chat_enabled is False)
        if row is None:
            config = GuildConfig(guild_id=guild_id, chat_channel_ids=on, chat_off_channel_ids=off)
        else:
            config = GuildConfig(
                guild_id=guild_id,
                chat_model=row.chat_model,
                image_model=row.image_model,
                vision_model=row.vision_model,
                tts_voice=row.tts_voice,
                disabled_capabilities=frozenset(row.disabled_capabilities or ()),
                chat_all_channels=row.chat_all_channels,
                chat_channel_ids=on,
                chat_off_channel_ids=off,
                max_input_chars=row.max_input_chars,
                quota_bypass_role_id=row.quota_bypass_role_id,
                log_channel_id=row.log_channel_id,
                role_plans=dict(row.role_plans or {}),
            )
        return GuildSnapshot(config, channels)

    async def get(self, guild_id: int) -> GuildConfig:
        return (await self.snapshot(guild_id)).config

    async def chat_settings(
        self, guild_id: int | None, channel_id: int, parent_id: int | None = None
    ) -> ChannelChatSettings:
        """Chat's effective settings in a channel; in a thread, each value the thread doesn't set comes
        from its parent channel. In a DM nothing is read: guild settings never apply there."""
        if guild_id is None:
            return ChannelChatSettings()
        snapshot = await self.snapshot(guild_id)
        guild = snapshot.config
        rows = [c for c in (snapshot.channels.get(channel_id), snapshot.channels.get(parent_id or 0)) if c]
        return ChannelChatSettings(
            guild_id=guild_id,
            system_prompt=next((r.system_prompt for r in rows if r.system_prompt), None),
            model=next((r.chat_model for r in rows if r.chat_model), None) or guild.chat_model,
            max_input_chars=guild.max_input_chars,
            capability_on=guild.is_enabled("chat"),
            channel_switch=_nearest(*(r.chat_enabled for r in rows)),
            all_channels=guild.chat_all_channels,
        )

    async def channel(self, channel_id: int) -> ChannelConfig:
        async with self.sessions() as session:
            row = await session.get(ChannelSettings, channel_id)
        if row is None:
            return ChannelConfig(channel_id, None, None, None)
        return ChannelConfig(channel_id, row.system_prompt, row.chat_enabled, row.chat_model)

    async def ensure_enabled(self, guild_id: int | None, capability: str) -> None:
        """Raise FeatureUnavailable when a server admin switched `capability` off (DMs: always on)."""
        if guild_id is None:
            return
        if not (await self.get(guild_id)).is_enabled(capability):
            raise FeatureUnavailable(f"The server's admins have switched {capability} off here.")

    async def audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ConfigAudit)
                .where(ConfigAudit.guild_id == guild_id)
                .order_by(ConfigAudit.id.desc())
                .limit(limit)
            )
            return [
                AuditEntry(r.id, r.actor_id, r.setting, r.target_id, r.old_value, r.new_value, r.created_at)
                for r in rows
            ]

    # --- writes --------------------------------------------------------------------------------

    async def _channel_row(self, session: AsyncSession, guild_id: int, channel_id: int) -> ChannelSettings:
        insert = upsert_insert(session)
        await session.execute(
            insert(ChannelSettings)
            .values(channel_id=channel_id, guild_id=guild_id)
            .on_conflict_do_nothing(index_elements=["channel_id"])
        )
        row = await session.get(ChannelSettings, channel_id, populate_existing=True, with_for_update=True)
        assert row is not None
        if row.guild_id != guild_id:
            raise InvalidInput("That channel belongs to another server.")
        return row

    @staticmethod
    def _record(
        session: AsyncSession,
        guild_id: int,
        actor_id: int,
        setting: str,
        old: Any,
        new: Any,
        target_id: int | None = None,
    ) -> None:
        session.add(
            ConfigAudit(
                guild_id=guild_id,
                actor_id=actor_id,
                setting=setting,
                target_id=target_id,
                old_value=_shown(old),
                new_value=_shown(new),
            )
        )

    async def _set_guild(self, guild_id: int, actor_id: int, setting: str, column: str, value: Any) -> Any:
        async with self.sessions() as session:
            row = await lock_guild_settings(session, guild_id)
            old = getattr(row, column)
            setattr(row, column, value)
            self._record(session, guild_id, actor_id, setting, old, value)
            await session.commit()
        self.cache.invalidate()
        return old

    async def set_model(
        self, guild_id: int, actor_id: int, kind: str, model: str | None, *, known: Collection[str]
    ) -> None:
        """Set the default model (or TTS voice) for `kind`; None restores the bot-wide default.

        `known` is the provider's list for that kind; a name not in it is refused (case-insensitively)."""
        if kind not in MODEL_COLUMNS:
            raise InvalidInput(f"Model kinds are {', '.join(MODEL_COLUMNS)}.")
        if model is not None:
            model = model.strip()
            by_lower = {name.lower(): name for name in known}
            if not by_lower:
                raise InvalidInput(
                    f"No {kind} model list is available right now, so `{model[:100]}` can't be checked; "
                    "try again when the AI providers answer."
                )
            if model.lower() not in by_lower:
                raise InvalidInput(
                    f"`{model[:100]}` isn't in the {kind} model list; pick one from the suggestions."
                )
            model = by_lower[model.lower()]
        column = MODEL_COLUMNS[kind]
        await self._set_guild(guild_id, actor_id, column, column, model)

    async def set_capability(self, guild_id: int, actor_id: int, capability: str, enabled: bool) -> None:
        if capability not in CAPABILITIES:
            raise InvalidInput(f"Capabilities are {', '.join(CAPABILITIES)}.")
        async with self.sessions() as session:
            row = await lock_guild_settings(session, guild_id)
            old = sorted(row.disabled_capabilities or [])
            new = sorted(set(old) - {capability}) if enabled else sorted({*old, capability})
            row.disabled_capabilities = new
            self._record(session, guild_id, actor_id, "disabled_capabilities", old, new)
            await session.commit()
        self.cache.invalidate()

    async def set_chat_all_channels(self, guild_id: int, actor_id: int, enabled: bool) -> None:
        await self._set_guild(guild_id, actor_id, "chat_all_channels", "chat_all_channels", enabled)

    async def set_max_input_chars(self, guild_id: int, actor_id: int, value: int | None) -> None:
        if value is not None and not 1 <= value <= MAX_INPUT_CHARS_LIMIT:
            raise InvalidInput(f"Max input characters must be from 1 to {MAX_INPUT_CHARS_LIMIT}.")
        await self._set_guild(guild_id, actor_id, "max_input_chars", "max_input_chars", value)

    async def set_bypass_role(
        self, guild_id: int, actor_id: int, role_id: int | None, *, role_guild_id: int | None = None
    ) -> None:
        if role_id is not None and role_guild_id != guild_id:
            raise InvalidInput("That role belongs to another server.")
        await self._set_guild(guild_id, actor_id, "quota_bypass_role", "quota_bypass_role_id", role_id)

    async def set_log_channel(
        self, guild_id: int, actor_id: int, channel_id: int | None, *, channel_guild_id: int | None = None
    ) -> None:
        if channel_id is not None and channel_guild_id != guild_id:
            raise InvalidInput("That channel isn't in this server.")
        await self._set_guild(guild_id, actor_id, "log_channel", "log_channel_id", channel_id)

    async def set_role_plan(
        self,
        guild_id: int,
        actor_id: int,
        role_id: int,
        plan: str | Mapping[str, Any] | None,
        *,
        role_guild_id: int | None = None,
    ) -> None:
        """Give a role a plan: "free", "premium", custom numbers (see quotas.parse_custom_limits), or None
        to remove it. The @everyone role (id = guild id) sets the default for members without a plan role."""
        if role_guild_id != guild_id:
            raise InvalidInput("That role belongs to another server.")
        if isinstance(plan, str) and plan not in SERVER_PLANS:
            raise InvalidInput(f"Plans are {', '.join(SERVER_PLANS)}, or custom numbers.")
        async with self.sessions() as session:
            row = await lock_guild_settings(session, guild_id)
            plans = dict(row.role_plans or {})
            old = plans.get(str(role_id))
            if plan is None:
                plans.pop(str(role_id), None)
            else:
                plans[str(role_id)] = plan if isinstance(plan, str) else dict(plan)
            row.role_plans = plans
            self._record(session, guild_id, actor_id, "role_plan", old, plan, target_id=role_id)
            await session.commit()
        self.cache.invalidate()

    async def set_chat_channel(
        self,
        guild_id: int,
        actor_id: int,
        channel_id: int,
        enabled: bool | None,
        *,
        channel_guild_id: int | None,
    ) -> None:
        if channel_guild_id != guild_id:
            raise InvalidInput("That channel isn't in this server.")
        async with self.sessions() as session:
            row = await self._channel_row(session, guild_id, channel_id)
            old = row.chat_enabled
            row.chat_enabled = enabled
            self._record(session, guild_id, actor_id, "chat_channel", old, enabled, target_id=channel_id)
            await session.commit()
        self.cache.invalidate()

    async def set_system_prompt(
        self,
        guild_id: int,
        actor_id: int,
        channel_id: int,
        prompt: str | None,
        *,
        channel_guild_id: int | None,
    ) -> None:
        if channel_guild_id != guild_id:
            raise InvalidInput("That channel isn't in this server.")
        prompt = (prompt or "").strip() or None
        if prompt is not None and len(prompt) > SYSTEM_PROMPT_MAX:
            raise InvalidInput(
                f"A system prompt may be at most {SYSTEM_PROMPT_MAX} characters (got {len(prompt)})."
            )
        async with self.sessions() as session:
            row = await self._channel_row(session, guild_id, channel_id)
            old = row.system_prompt
            row.system_prompt = prompt
            self._record(session, guild_id, actor_id, "system_prompt", old, prompt, target_id=channel_id)
            await session.commit()
        self.cache.invalidate()
