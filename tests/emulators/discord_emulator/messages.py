"""Building message objects: mention parsing, allowed_mentions (who is actually pinged), edits, wire form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import permissions as perm
from .models import Channel, Json, User, iso_now
from .state import World

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
EVERYONE_MENTION = re.compile(r"@(everyone|here)\b")

MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
# Flags a sender may set; the rest (e.g. LOADING, EPHEMERAL) belong to Discord or to interaction responses.
SETTABLE_FLAGS = SUPPRESS_EMBEDS | (1 << 12) | (1 << 15)


@dataclass
class Pings:
    """Who a message notifies: what `allowed_mentions` left of the mentions written in its content."""

    users: list[User] = field(default_factory=list)
    role_ids: list[int] = field(default_factory=list)
    everyone: bool = False
    replied_user: bool = False

    def summary(self) -> Json:
        return {
            "users": [u.id for u in self.users],
            "roles": list(self.role_ids),
            "everyone": self.everyone,
            "replied_user": self.replied_user,
        }


def compute_pings(
    world: World,
    channel: Channel,
    author: User,
    content: str,
    *,
    allowed_mentions: Json | None,
    replied_author: User | None,
) -> Pings:
    """Apply Discord's rules: without allowed_mentions everything written pings, replies included."""
    guild = channel.guild
    written_users = [
        world.users[int(uid)] for uid in USER_MENTION.findall(content) if int(uid) in world.users
    ]
    written_users = list(dict.fromkeys(written_users))
    written_roles: list[int] = []
    if guild is not None:
        written_roles = list(
            dict.fromkeys(int(r) for r in ROLE_MENTION.findall(content) if int(r) in guild.roles)
        )
    written_everyone = bool(EVERYONE_MENTION.search(content))

    author_perms = perm.ALL
    if guild is not None and author.id in guild.members:
        author_perms = guild.members[author.id].permissions_in(channel)
    can_mention_everyone = guild is not None and bool(author_perms & perm.MENTION_EVERYONE)

    if allowed_mentions is None:
        parse = {"users", "roles", "everyone"}
        allow_users: set[int] = set()
        allow_roles: set[int] = set()
        replied_user = True
    else:
        parse = set(allowed_mentions.get("parse") or [])
        allow_users = {int(u) for u in allowed_mentions.get("users") or []}
        allow_roles = {int(r) for r in allowed_mentions.get("roles") or []}
        replied_user = bool(allowed_mentions.get("replied_user", False))

    pings = Pings()
    pings.users = [u for u in written_users if "users" in parse or u.id in allow_users]
    if guild is not None:
        pings.role_ids = [
            r
            for r in written_roles
            if ("roles" in parse or r in allow_roles) and (guild.roles[r].mentionable or can_mention_everyone)
        ]
    pings.everyone = written_everyone and "everyone" in parse and can_mention_everyone
    if replied_author is not None and replied_user and replied_author.id != author.id:
        pings.replied_user = True
        if replied_author not in pings.users:
            pings.users.append(replied_author)
    return pings


def _mention_payload(world: World, channel: Channel, user: User) -> Json:
    payload = user.to_payload()
    if channel.guild is not None and user.id in channel.guild.members:
        payload["member"] = channel.guild.members[user.id].to_payload(include_user=False)
    return payload


def normalise_embeds(embeds: list[Json]) -> list[Json]:
    """Discord fills in an embed's type; everything else comes back as sent."""
    return [{"type": "rich", **embed} for embed in embeds]


def build_message(
    world: World,
    channel: Channel,
    author: User,
    *,
    content: str = "",
    embeds: list[Json] | None = None,
    components: list[Json] | None = None,
    attachments: list[Json] | None = None,
    flags: int = 0,
    reference: Json | None = None,
    pings: Pings | None = None,
    webhook_id: int | None = None,
    interaction_metadata: Json | None = None,
    tts: bool = False,
    nonce: Any = None,
) -> Json:
    """A complete message object as Discord stores it; keys starting with "_" are emulator-only."""
    pings = pings or Pings()
    message_id = world.snowflake()
    message: Json = {
        "id": str(message_id),
        "channel_id": str(channel.id),
        "author": author.to_payload(),
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": tts,
        "mention_everyone": pings.everyone,
        "mentions": [_mention_payload(world, channel, u) for u in pings.users],
        "mention_roles": [str(r) for r in pings.role_ids],
        "mention_channels": [],
        "attachments": attachments or [],
        "embeds": normalise_embeds(embeds or []),
        "reactions": [],
        "pinned": False,
        "type": MESSAGE_DEFAULT,
        "flags": flags,
        "components": components or [],
        "_pinged": pings.summary(),
        "_author_id": author.id,
    }
    if nonce is not None:
        message["nonce"] = nonce
    if channel.guild is not None:
        message["guild_id"] = str(channel.guild.id)
        if webhook_id is None and author.id in channel.guild.members:
            message["member"] = channel.guild.members[author.id].to_payload(include_user=False)
    if reference is not None:
        message["type"] = MESSAGE_REPLY
        message["message_reference"] = {
            "type": 0,
            "message_id": reference["id"],
            "channel_id": reference["channel_id"],
            **({"guild_id": reference["guild_id"]} if "guild_id" in reference else {}),
        }
        message["referenced_message"] = {k: v for k, v in reference.items() if k != "referenced_message"}
    if webhook_id is not None:
        message["webhook_id"] = str(webhook_id)
        message["application_id"] = str(webhook_id)
    if interaction_metadata is not None:
        message["type"] = MESSAGE_CHAT_INPUT_COMMAND if interaction_metadata["type"] == 2 else MESSAGE_DEFAULT
        message["interaction_metadata"] = interaction_metadata
    return message


def apply_edit(
    world: World,
    channel: Channel,
    message: Json,
    payload: Json,
    new_attachments: list[Json],
) -> None:
    """Apply a PATCH body: given fields replace, `attachments` lists what to keep, new files are added."""
    if "content" in payload:
        message["content"] = payload["content"] or ""
    if "embeds" in payload:
        message["embeds"] = normalise_embeds(payload["embeds"] or [])
    if "components" in payload:
        message["components"] = payload["components"] or []
    if payload.get("flags") is not None:
        keep = message["flags"] & ~SETTABLE_FLAGS & ~LOADING
        message["flags"] = keep | (int(payload["flags"]) & SETTABLE_FLAGS)
    if "attachments" in payload:
        keep_ids = {str(a.get("id")) for a in payload["attachments"] or []}
        message["attachments"] = [a for a in message["attachments"] if a["id"] in keep_ids]
    message["attachments"] = message["attachments"] + new_attachments
    # Editing never notifies anyone; the mention fields still follow the new content.
    author = world.users[message["_author_id"]]
    pings = compute_pings(
        world,
        channel,
        author,
        message["content"],
        allowed_mentions=payload.get("allowed_mentions"),
        replied_author=None,
    )
    message["mentions"] = [_mention_payload(world, channel, u) for u in pings.users]
    message["mention_roles"] = [str(r) for r in pings.role_ids]
    message["mention_everyone"] = pings.everyone
    message["edited_timestamp"] = iso_now()
    message["flags"] &= ~LOADING


def wire(message: Json) -> Json:
    """The message as Discord sends it: without the emulator's private "_" keys."""
    out = {k: v for k, v in message.items() if not k.startswith("_")}
    if isinstance(out.get("referenced_message"), dict):
        out["referenced_message"] = wire(out["referenced_message"])
    return out
