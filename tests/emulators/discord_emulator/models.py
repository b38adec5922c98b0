"""The emulated Discord world's objects (users, guilds, roles, channels, members) and their wire payloads."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import permissions as perm

if TYPE_CHECKING:
    from .state import World

Json = dict[str, Any]

TEXT = 0
DM = 1
VOICE = 2
CATEGORY = 4
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
THREAD_TYPES = (PUBLIC_THREAD, PRIVATE_THREAD)


def iso_now() -> str:
    """A timestamp in the ISO 8601 form Discord uses."""
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass(eq=False)
class User:
    """A Discord account: a person or a bot."""

    id: int
    name: str
    global_name: str | None = None
    bot: bool = False
    discriminator: str = "0"
    avatar: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> Json:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.global_name,
            "discriminator": self.discriminator,
            "avatar": self.avatar,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }


@dataclass(eq=False)
class Role:
    """A guild role; the @everyone role shares the guild's id."""

    id: int
    guild: Guild
    name: str
    permissions: int = 0
    color: int = 0
    hoist: bool = False
    position: int = 0
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return "@everyone" if self.id == self.guild.id else f"<@&{self.id}>"

    def to_payload(self) -> Json:
        payload: Json = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "position": self.position,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            payload["tags"] = {"bot_id": str(self.bot_id)}
        return payload

    def edit(self, *, permissions: int | None = None, name: str | None = None) -> Role:
        """Change the role and tell the bot (GUILD_ROLE_UPDATE)."""
        if permissions is not None:
            self.permissions = permissions
        if name is not None:
            self.name = name
        self.guild.world.dispatch(
            "GUILD_ROLE_UPDATE", {"guild_id": str(self.guild.id), "role": self.to_payload()}
        )
        return self


@dataclass(eq=False)
class Channel:
    """A guild text/voice/category channel, a thread, or a DM."""

    id: int
    type: int
    name: str | None
    guild: Guild | None = None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    overwrites: list[perm.Overwrite] = field(default_factory=list)
    recipient: User | None = None
    owner_id: int | None = None
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    def set_permissions(self, target: Role | User | Member, *, allow: int = 0, deny: int = 0) -> None:
        """Add or replace an overwrite, then tell the bot (CHANNEL_UPDATE)."""
        if self.guild is None:
            raise ValueError("DM channels have no permission overwrites")
        if isinstance(target, Role):
            kind, target_id = perm.OVERWRITE_ROLE, target.id
        else:
            user = target.user if isinstance(target, Member) else target
            kind, target_id = perm.OVERWRITE_MEMBER, user.id
        self.overwrites = [ow for ow in self.overwrites if (ow.type, ow.target_id) != (kind, target_id)]
        self.overwrites.append(perm.Overwrite(target_id, kind, allow, deny))
        self.guild.world.dispatch("CHANNEL_UPDATE", self.to_payload())

    def to_payload(self) -> Json:
        if self.type == DM:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "recipients": [self.recipient.to_payload()],
                "flags": 0,
            }
        assert self.guild is not None
        payload: Json = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "nsfw": self.nsfw,
            "flags": 0,
            "permission_overwrites": [
                {"id": str(ow.target_id), "type": ow.type, "allow": str(ow.allow), "deny": str(ow.deny)}
                for ow in self.overwrites
            ],
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
        }
        if self.type == TEXT:
            payload.update(topic=self.topic, rate_limit_per_user=0, default_auto_archive_duration=1440)
        elif self.type == VOICE:
            payload.update(bitrate=64000, user_limit=0, rtc_region=None, video_quality_mode=1)
        elif self.is_thread:
            # Threads carry no overwrites of their own; they inherit the parent's.
            del payload["permission_overwrites"]
            payload.update(
                owner_id=str(self.owner_id) if self.owner_id else None,
                message_count=0,
                member_count=1,
                rate_limit_per_user=0,
                total_message_sent=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_now(),
                    "locked": False,
                    "invitable": True,
                    "create_timestamp": iso_now(),
                },
            )
        return payload


@dataclass(eq=False)
class Member:
    """A user's membership of a guild."""

    user: User
    guild: Guild
    roles: list[Role] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)
    flags: int = 0

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def permissions(self) -> int:
        """Guild-level permissions (owner and administrator get everything)."""
        return perm.base_permissions(
            self.guild.everyone.permissions,
            (r.permissions for r in self.roles),
            is_owner=self.user.id == self.guild.owner_id,
        )

    def permissions_in(self, channel: Channel) -> int:
        """Permissions in a channel after overwrites (threads use their parent's)."""
        target = channel
        if channel.is_thread and channel.parent_id is not None:
            target = self.guild.channels[channel.parent_id]
        return perm.apply_overwrites(
            self.permissions,
            target.overwrites,
            guild_id=self.guild.id,
            role_ids=[r.id for r in self.roles],
            member_id=self.user.id,
        )

    def add_roles(self, *roles: Role) -> None:
        """Give roles and tell the bot (GUILD_MEMBER_UPDATE)."""
        for role in roles:
            if role not in self.roles:
                self.roles.append(role)
        self.guild.world.dispatch(
            "GUILD_MEMBER_UPDATE", {**self.to_payload(), "guild_id": str(self.guild.id)}
        )

    def to_payload(self, *, include_user: bool = True) -> Json:
        payload: Json = {
            "roles": [str(r.id) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": self.flags,
            "communication_disabled_until": None,
        }
        if include_user:
            payload["user"] = self.user.to_payload()
        return payload


@dataclass(eq=False)
class Guild:
    """A server, with its roles, channels, members and voice states."""

    id: int
    name: str
    owner_id: int
    world: World
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    voice_states: dict[int, int] = field(default_factory=dict)
    # Per member in voice: session id and self mute/deafen, as the gateway reports them.
    voice_flags: dict[int, Json] = field(default_factory=dict)
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    joined_at: str = field(default_factory=iso_now)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    @property
    def bot_member(self) -> Member:
        return self.members[self.world.bot_user.id]

    @property
    def upload_limit(self) -> int:
        """Per-file upload limit in bytes; boosts raise it as on Discord."""
        return {0: 10, 1: 10, 2: 50, 3: 100}[self.premium_tier] * 1024 * 1024

    def _add_role(self, name: str, permissions: int, **kwargs: Any) -> Role:
        role = Role(self.world.snowflake(), self, name, permissions, position=len(self.roles), **kwargs)
        self.roles[role.id] = role
        return role

    def create_role(
        self,
        name: str,
        permissions: int = 0,
        *,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> Role:
        """A new role; dispatches GUILD_ROLE_CREATE when the bot is connected."""
        role = self._add_role(name, permissions, color=color, hoist=hoist, mentionable=mentionable)
        self.world.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.to_payload()})
        return role

    def _add_channel(self, type_: int, name: str, **kwargs: Any) -> Channel:
        channel = Channel(self.world.snowflake(), type_, name, self, position=len(self.channels), **kwargs)
        self.channels[channel.id] = channel
        self.world.channels[channel.id] = channel
        return channel

    def create_text_channel(
        self, name: str, *, topic: str | None = None, category: Channel | None = None, nsfw: bool = False
    ) -> Channel:
        """A text channel (type 0); dispatches CHANNEL_CREATE when the bot is connected."""
        channel = self._add_channel(
            TEXT, name, topic=topic, nsfw=nsfw, parent_id=category.id if category else None
        )
        self.world.dispatch("CHANNEL_CREATE", channel.to_payload())
        return channel

    def create_voice_channel(self, name: str, *, category: Channel | None = None) -> Channel:
        """A voice channel (type 2); dispatches CHANNEL_CREATE when the bot is connected."""
        channel = self._add_channel(VOICE, name, parent_id=category.id if category else None)
        self.world.dispatch("CHANNEL_CREATE", channel.to_payload())
        return channel

    def create_category(self, name: str) -> Channel:
        """A category (type 4); dispatches CHANNEL_CREATE when the bot is connected."""
        channel = self._add_channel(CATEGORY, name)
        self.world.dispatch("CHANNEL_CREATE", channel.to_payload())
        return channel

    def create_thread(
        self, parent: Channel, name: str, *, owner: User | None = None, private: bool = False
    ) -> Channel:
        """A thread under a text channel (type 11, or 12 if private); dispatches THREAD_CREATE."""
        if parent.guild is not self or parent.type != TEXT:
            raise ValueError("threads live under a text channel of the same guild")
        owner_id = (owner or self.world.bot_user).id
        thread = self._add_channel(
            PRIVATE_THREAD if private else PUBLIC_THREAD, name, parent_id=parent.id, owner_id=owner_id
        )
        self.world.dispatch("THREAD_CREATE", {**thread.to_payload(), "newly_created": True})
        return thread

    def add_member(
        self, user: User, roles: list[Role] | tuple[Role, ...] = (), nick: str | None = None
    ) -> Member:
        """Make the user a member; dispatches GUILD_MEMBER_ADD when the bot is connected."""
        member = Member(user, self, list(roles), nick)
        self.members[user.id] = member
        self.world.dispatch("GUILD_MEMBER_ADD", {**member.to_payload(), "guild_id": str(self.id)})
        return member

    def get_member(self, user: User | Member | int) -> Member:
        user_id = user if isinstance(user, int) else user.id
        try:
            return self.members[user_id]
        except KeyError:
            raise AssertionError(f"user {user_id} is not a member of guild {self.name!r}") from None

    def set_voice_state(
        self,
        user: User | Member,
        channel: Channel | None,
        *,
        session_id: str | None = None,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Put a member into a voice channel, or move them (None leaves); dispatches VOICE_STATE_UPDATE."""
        member = self.get_member(user.id)
        if channel is None:
            self.voice_states.pop(member.id, None)
            self.voice_flags.pop(member.id, None)
        else:
            if channel.guild is not self or channel.type != VOICE:
                raise ValueError("voice states need a voice channel of the same guild")
            self.voice_states[member.id] = channel.id
            self.voice_flags[member.id] = {
                "session_id": session_id or f"voice-{member.id}",
                "self_mute": self_mute,
                "self_deaf": self_deaf,
            }
        payload = self.voice_state_payload(member, channel)
        if session_id is not None:
            payload["session_id"] = session_id
        self.world.dispatch("VOICE_STATE_UPDATE", payload)

    def voice_channel_of(self, user: User | Member) -> Channel | None:
        """The voice channel a member (or the bot) is in, or None."""
        channel_id = self.voice_states.get(user.id)
        return self.channels[channel_id] if channel_id is not None else None

    def voice_members(self, channel: Channel) -> list[Member]:
        return [self.members[uid] for uid, cid in self.voice_states.items() if cid == channel.id]

    def voice_state_payload(self, member: Member, channel: Channel | None) -> Json:
        flags = self.voice_flags.get(member.id, {})
        return {
            "guild_id": str(self.id),
            "channel_id": str(channel.id) if channel else None,
            "user_id": str(member.id),
            "member": member.to_payload(),
            "session_id": flags.get("session_id", f"voice-{member.id}"),
            "deaf": False,
            "mute": False,
            "self_deaf": flags.get("self_deaf", False),
            "self_mute": flags.get("self_mute", False),
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }

    def to_payload(self) -> Json:
        """The full GUILD_CREATE body, every member included so the client never needs to chunk."""
        channels = [c for c in self.channels.values() if not c.is_thread]
        threads = [c for c in self.channels.values() if c.is_thread]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": self.preferred_locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [r.to_payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [c.to_payload() for c in channels],
            "threads": [c.to_payload() for c in threads],
            "members": [m.to_payload() for m in self.members.values()],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": self.joined_at,
            "voice_states": [
                self.voice_state_payload(self.members[uid], self.channels[cid])
                for uid, cid in self.voice_states.items()
            ],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "max_members": 500000,
            "premium_progress_bar_enabled": False,
            "application_id": None,
        }
