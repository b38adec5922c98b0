"""Discord permission bits and the guild/channel permission computation the emulator enforces."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
PRIORITY_SPEAKER = 1 << 8
STREAM = 1 << 9
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
USE_VAD = 1 << 25
CHANGE_NICKNAME = 1 << 26
MANAGE_NICKNAMES = 1 << 27
MANAGE_ROLES = 1 << 28
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
USE_EXTERNAL_APPS = 1 << 50

ALL = (1 << 51) - 1

# What a freshly created guild grants @everyone (the everyday chat and voice rights).
DEFAULT_EVERYONE = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | USE_VAD
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
    | USE_EXTERNAL_APPS
)

# The managed role an invite link with a typical bot scope would create.
DEFAULT_BOT = DEFAULT_EVERYONE | MANAGE_MESSAGES | MANAGE_THREADS

# In a DM the bot may do what a participant may do; Discord reports a fixed set there.
DM_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)

# Overwrite target kinds as Discord encodes them.
OVERWRITE_ROLE = 0
OVERWRITE_MEMBER = 1


@dataclass
class Overwrite:
    """A channel permission overwrite for one role or member."""

    target_id: int
    type: int
    allow: int = 0
    deny: int = 0


def base_permissions(everyone: int, role_permissions: Iterable[int], *, is_owner: bool) -> int:
    """Guild-level permissions: @everyone OR the member's roles; owners and administrators get all."""
    if is_owner:
        return ALL
    perms = everyone
    for value in role_permissions:
        perms |= value
    if perms & ADMINISTRATOR:
        return ALL
    return perms


def apply_overwrites(
    base: int, overwrites: Iterable[Overwrite], *, guild_id: int, role_ids: Iterable[int], member_id: int
) -> int:
    """Channel permissions in Discord's documented order: @everyone, then roles combined, then the member."""
    if base & ADMINISTRATOR or base == ALL:
        return ALL
    by_target = {(ow.type, ow.target_id): ow for ow in overwrites}
    perms = base
    everyone = by_target.get((OVERWRITE_ROLE, guild_id))
    if everyone is not None:
        perms = (perms & ~everyone.deny) | everyone.allow
    allow = deny = 0
    for role_id in role_ids:
        ow = by_target.get((OVERWRITE_ROLE, role_id))
        if ow is not None:
            allow |= ow.allow
            deny |= ow.deny
    perms = (perms & ~deny) | allow
    member = by_target.get((OVERWRITE_MEMBER, member_id))
    if member is not None:
        perms = (perms & ~member.deny) | member.allow
    # Without VIEW_CHANNEL nothing else in the channel is usable.
    if not perms & VIEW_CHANNEL:
        return 0
    return perms
