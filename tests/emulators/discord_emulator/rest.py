"""REST routes for login, channels, messages, reactions, DMs, guilds and command sync."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import errors as err
from . import limits
from . import permissions as perm
from .messages import SETTABLE_FLAGS, apply_edit, build_message, compute_pings, wire
from .models import DM, Channel, Guild, Json
from .router import ApiRequest, Reply, Router, UploadedFile

if TYPE_CHECKING:
    from .emulator import DiscordEmulator


# -- shared helpers (also used by the interaction routes) -----------------------------------------


def bot_permissions(emu: DiscordEmulator, channel: Channel) -> int:
    if channel.guild is None:
        return perm.DM_PERMISSIONS
    return channel.guild.bot_member.permissions_in(channel)


def get_channel(emu: DiscordEmulator, channel_id: int) -> Channel:
    """The channel if it exists and the bot can see it (404 Unknown Channel / 403 Missing Access)."""
    channel = emu.world.channels.get(channel_id)
    if channel is None:
        raise err.unknown("Channel", err.UNKNOWN_CHANNEL)
    if channel.guild is not None and not bot_permissions(emu, channel) & perm.VIEW_CHANNEL:
        raise err.missing_access()
    return channel


def get_message(emu: DiscordEmulator, channel: Channel, message_id: int) -> Json:
    message = emu.world.find(channel.id, message_id)
    if message is None:
        raise err.unknown("Message", err.UNKNOWN_MESSAGE)
    return message


def upload_limit(channel: Channel) -> int:
    return channel.guild.upload_limit if channel.guild is not None else 10 * 1024 * 1024


def host_uploads(
    emu: DiscordEmulator, channel: Channel, payload: Json, files: list[UploadedFile]
) -> list[Json]:
    """Store uploaded `files[n]` parts; `payload.attachments[].id == n` may rename or describe them."""
    described = {str(a.get("id")): a for a in payload.get("attachments") or []}
    hosted = []
    for index, upload in enumerate(files):
        key = upload.field[len("files[") : -1] if upload.field.startswith("files[") else str(index)
        meta = described.get(key, {})
        attachment = emu.world.host_file(
            channel.id, meta.get("filename") or upload.filename, upload.data, upload.content_type
        )
        if meta.get("description"):
            attachment["description"] = meta["description"]
        if upload.filename.startswith("SPOILER_"):
            attachment["spoiler"] = True
        hosted.append(attachment)
    return hosted


def check_payload(channel: Channel, payload: Json, files: list[UploadedFile], *, is_edit: bool) -> None:
    limits.check_message(
        payload, file_sizes=[len(f.data) for f in files], upload_limit=upload_limit(channel), is_edit=is_edit
    )


def dispatch_message(emu: DiscordEmulator, event: str, message: Json) -> None:
    if not message["flags"] & 64:
        emu.world.dispatch(event, wire(message))
    emu.notify_messages()


def dispatch_delete(emu: DiscordEmulator, message: Json) -> None:
    emu.world.remove(message)
    if not message["flags"] & 64:
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        emu.world.dispatch("MESSAGE_DELETE", data)
    emu.notify_messages()


def edit_message(
    emu: DiscordEmulator, channel: Channel, message: Json, payload: Json, files: list[UploadedFile]
) -> Json:
    """Validate and apply an edit; the result may not be empty. Returns the edited (live) message."""
    check_payload(channel, payload, files, is_edit=True)
    candidate = copy.deepcopy(message)
    apply_edit(emu.world, channel, candidate, payload, host_uploads(emu, channel, payload, files))
    limits.check_not_empty(candidate)
    message.clear()
    message.update(candidate)
    dispatch_message(emu, "MESSAGE_UPDATE", message)
    return message


# -- login and gateway discovery ------------------------------------------------------------------


async def get_me(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    return Reply(200, {**emu.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "email": None})


async def get_user(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    user = emu.world.users.get(req.id("user_id"))
    if user is None:
        raise err.unknown("User", err.UNKNOWN_USER)
    return Reply(200, user.to_payload())


async def get_application(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    return Reply(200, emu.application_payload())


async def get_gateway(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    return Reply(200, {"url": emu.gateway_url})


async def get_gateway_bot(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    return Reply(
        200,
        {
            "url": emu.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14400000,
                "max_concurrency": 1,
            },
        },
    )


# -- channels and messages ------------------------------------------------------------------------


async def get_channel_route(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    return Reply(200, get_channel(emu, req.id("channel_id")).to_payload())


async def create_message(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    payload = req.body
    have = bot_permissions(emu, channel)
    send_bit = perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else perm.SEND_MESSAGES
    if not have & send_bit:
        raise err.missing_permissions()
    if req.files and not have & perm.ATTACH_FILES:
        raise err.missing_permissions()
    if channel.type == DM and channel.recipient is not None and channel.recipient.id in emu.world.dms_closed:
        raise err.ApiError(403, 50007, "Cannot send messages to this user")
    check_payload(channel, payload, req.files, is_edit=False)

    reference = None
    ref = payload.get("message_reference")
    if ref and ref.get("message_id"):
        reference = emu.world.find(int(ref.get("channel_id") or channel.id), int(ref["message_id"]))
        if reference is None and ref.get("fail_if_not_exists", True):
            raise err.invalid_form_body(
                err.field_error(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            )
    replied_author = emu.world.users.get(reference["_author_id"]) if reference else None
    content = payload.get("content") or ""
    pings = compute_pings(
        emu.world,
        channel,
        emu.bot_user,
        content,
        allowed_mentions=payload.get("allowed_mentions"),
        replied_author=replied_author,
    )
    message = build_message(
        emu.world,
        channel,
        emu.bot_user,
        content=content,
        # Without EMBED_LINKS Discord keeps the message but shows no embeds.
        embeds=payload.get("embeds") if have & perm.EMBED_LINKS else [],
        components=payload.get("components"),
        attachments=host_uploads(emu, channel, payload, req.files),
        flags=int(payload.get("flags") or 0) & SETTABLE_FLAGS,
        reference=reference,
        pings=pings,
        tts=bool(payload.get("tts")),
        nonce=payload.get("nonce"),
    )
    emu.world.store(message)
    dispatch_message(emu, "MESSAGE_CREATE", message)
    return Reply(200, wire(message))


async def edit_message_route(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    message = get_message(emu, channel, req.id("message_id"))
    if message["_author_id"] != emu.bot_user.id:
        raise err.cannot_edit_others()
    return Reply(200, wire(edit_message(emu, channel, message, req.body, req.files)))


async def delete_message(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    message = get_message(emu, channel, req.id("message_id"))
    if message["_author_id"] != emu.bot_user.id:
        if channel.guild is None:
            raise err.ApiError(403, 50003, "Cannot execute action on a DM channel")
        if not bot_permissions(emu, channel) & perm.MANAGE_MESSAGES:
            raise err.missing_permissions()
    dispatch_delete(emu, message)
    return Reply(204)


async def get_message_route(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    if not bot_permissions(emu, channel) & perm.READ_MESSAGE_HISTORY:
        raise err.missing_access()
    return Reply(200, wire(get_message(emu, channel, req.id("message_id"))))


async def get_messages(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    if not bot_permissions(emu, channel) & perm.READ_MESSAGE_HISTORY:
        return Reply(200, [])
    limit = int(req.query.get("limit", 50))
    if not 1 <= limit <= 100:
        raise err.invalid_form_body(
            err.field_error(["limit"], "NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")
        )
    history = emu.world.history(channel.id)
    if "before" in req.query:
        before = int(req.query["before"])
        history = [m for m in history if int(m["id"]) < before][-limit:]
    elif "after" in req.query:
        after = int(req.query["after"])
        history = [m for m in history if int(m["id"]) > after][:limit]
    elif "around" in req.query:
        around = int(req.query["around"])
        older = [m for m in history if int(m["id"]) < around][-(limit // 2) :] if limit > 1 else []
        newer = [m for m in history if int(m["id"]) >= around][: limit - len(older)]
        history = older + newer
    else:
        history = history[-limit:]
    # Discord lists newest first.
    return Reply(200, [wire(m) for m in reversed(history)])


async def trigger_typing(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    if channel.guild is not None and not bot_permissions(emu, channel) & perm.SEND_MESSAGES:
        raise err.missing_permissions()
    emu.typing.append(channel.id)
    return Reply(204)


# -- reactions ------------------------------------------------------------------------------------


def parse_emoji(raw: str) -> Json:
    """`name:id` for custom emoji, the character itself for unicode emoji."""
    if ":" in raw:
        name, _, emoji_id = raw.partition(":")
        return {"id": emoji_id, "name": name}
    return {"id": None, "name": raw}


def emoji_key(emoji: Json) -> str:
    return emoji["id"] or emoji["name"]


def change_reaction(
    emu: DiscordEmulator, channel: Channel, message: Json, user_id: int, raw: str, add: bool
) -> None:
    emoji = parse_emoji(raw)
    users: dict[str, set[int]] = message.setdefault("_reactors", {})
    key = emoji_key(emoji)
    reactors = users.setdefault(key, set())
    if (user_id in reactors) == add:
        return
    (reactors.add if add else reactors.discard)(user_id)
    reactions = [r for r in message["reactions"] if emoji_key(r["emoji"]) != key]
    if reactors:
        count = len(reactors)
        reactions.append(
            {
                "count": count,
                "count_details": {"burst": 0, "normal": count},
                "me": emu.bot_user.id in reactors,
                "me_burst": False,
                "burst_colors": [],
                "emoji": emoji,
            }
        )
    message["reactions"] = reactions
    data: Json = {
        "user_id": str(user_id),
        "channel_id": str(channel.id),
        "message_id": message["id"],
        "emoji": emoji,
        "burst": False,
        "type": 0,
    }
    if channel.guild is not None:
        data["guild_id"] = str(channel.guild.id)
        if add and user_id in channel.guild.members:
            data["member"] = channel.guild.members[user_id].to_payload()
    emu.world.dispatch("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", data)
    emu.notify_messages()


async def add_own_reaction(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    message = get_message(emu, channel, req.id("message_id"))
    if not bot_permissions(emu, channel) & perm.ADD_REACTIONS and not message["reactions"]:
        raise err.missing_permissions()
    change_reaction(emu, channel, message, emu.bot_user.id, req.params["emoji"], True)
    return Reply(204)


async def remove_reaction(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    channel = get_channel(emu, req.id("channel_id"))
    message = get_message(emu, channel, req.id("message_id"))
    target = req.params["user_id"]
    user_id = emu.bot_user.id if target == "@me" else int(target)
    if user_id != emu.bot_user.id and not bot_permissions(emu, channel) & perm.MANAGE_MESSAGES:
        raise err.missing_permissions()
    change_reaction(emu, channel, message, user_id, req.params["emoji"], False)
    return Reply(204)


# -- DMs, users and guilds ------------------------------------------------------------------------


async def open_dm(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    recipient = req.body.get("recipient_id")
    user = emu.world.users.get(int(recipient)) if recipient is not None else None
    if user is None:
        raise err.invalid_form_body(err.field_error(["recipient_id"], "USER_UNKNOWN", "Unknown user"))
    channel = emu.world.dm_channel(user)
    if channel not in emu.dm_channels:
        emu.dm_channels.append(channel)
    return Reply(200, channel.to_payload())


def get_guild(emu: DiscordEmulator, guild_id: int) -> Guild:
    guild = emu.world.guilds.get(guild_id)
    if guild is None:
        raise err.unknown("Guild", err.UNKNOWN_GUILD)
    return guild


async def get_guild_route(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    payload = get_guild(emu, req.id("guild_id")).to_payload()
    for key in (
        "channels",
        "threads",
        "members",
        "voice_states",
        "presences",
        "joined_at",
        "large",
        "unavailable",
    ):
        payload.pop(key, None)
    if req.query.get("with_counts") in ("true", "1", "True"):
        payload["approximate_member_count"] = payload["member_count"]
        payload["approximate_presence_count"] = 0
    return Reply(200, payload)


async def get_guild_channels(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    guild = get_guild(emu, req.id("guild_id"))
    return Reply(200, [c.to_payload() for c in guild.channels.values() if not c.is_thread])


async def get_guild_roles(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    guild = get_guild(emu, req.id("guild_id"))
    return Reply(200, [r.to_payload() for r in guild.roles.values()])


async def get_member(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    guild = get_guild(emu, req.id("guild_id"))
    member = guild.members.get(req.id("user_id"))
    if member is None:
        raise err.unknown("Member", err.UNKNOWN_MEMBER)
    return Reply(200, member.to_payload())


# -- application commands -------------------------------------------------------------------------


def check_app(emu: DiscordEmulator, req: ApiRequest) -> None:
    if req.params["app_id"] != str(emu.application_id):
        raise err.ApiError(403, 50001, "Missing Access")


def store_commands(
    emu: DiscordEmulator, target: dict[str, Json], body: Any, guild_id: int | None
) -> list[Json]:
    """Bulk overwrite: commands keep their id when a command of the same name and type existed."""
    if not isinstance(body, list):
        raise err.invalid_form_body(
            err.field_error([], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        )
    limits.check_commands(body)
    old = {(c["type"], c["name"]): c for c in target.values()}
    target.clear()
    for raw in body:
        command = normalise_command(emu, raw, guild_id)
        previous = old.get((command["type"], command["name"]))
        if previous is not None:
            command["id"] = previous["id"]
        target[command["name"] + f"#{command['type']}"] = command
    return list(target.values())


def normalise_command(emu: DiscordEmulator, raw: Json, guild_id: int | None) -> Json:
    command: Json = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "integration_types": [0],
        "contexts": None,
        **copy.deepcopy(raw),
    }
    command["id"] = str(emu.world.snowflake())
    command["application_id"] = str(emu.application_id)
    command["version"] = str(emu.world.snowflake())
    if guild_id is not None:
        command["guild_id"] = str(guild_id)
    return command


async def put_global_commands(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    return Reply(200, store_commands(emu, emu._global_commands, req.json, None))


async def get_global_commands(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    return Reply(200, list(emu._global_commands.values()))


async def put_guild_commands(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    guild = get_guild(emu, req.id("guild_id"))
    target = emu._guild_commands.setdefault(guild.id, {})
    return Reply(200, store_commands(emu, target, req.json, guild.id))


async def get_guild_commands(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    guild = get_guild(emu, req.id("guild_id"))
    return Reply(200, list(emu._guild_commands.get(guild.id, {}).values()))


async def upsert_global_command(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    limits.check_commands([req.body])
    command = normalise_command(emu, req.body, None)
    key = command["name"] + f"#{command['type']}"
    previous = emu._global_commands.get(key)
    if previous is not None:
        command["id"] = previous["id"]
    emu._global_commands[key] = command
    return Reply(200 if previous else 201, command)


async def delete_global_command(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    check_app(emu, req)
    for key, command in list(emu._global_commands.items()):
        if command["id"] == req.params["command_id"]:
            del emu._global_commands[key]
            return Reply(204)
    raise err.unknown("application command", err.UNKNOWN_APPLICATION_COMMAND)


def register(router: Router) -> None:
    add = router.add
    add("GET", "/users/@me", get_me)
    add("GET", "/users/{user_id}", get_user)
    add("GET", "/oauth2/applications/@me", get_application)
    add("GET", "/applications/@me", get_application)
    add("GET", "/gateway", get_gateway, auth=False)
    add("GET", "/gateway/bot", get_gateway_bot)
    add("POST", "/users/@me/channels", open_dm, bucket="dm_open", major=None)

    add("GET", "/channels/{channel_id}", get_channel_route, major="channel_id")
    add("GET", "/channels/{channel_id}/messages", get_messages, major="channel_id")
    add(
        "POST",
        "/channels/{channel_id}/messages",
        create_message,
        bucket="channel_messages",
        major="channel_id",
    )
    add("GET", "/channels/{channel_id}/messages/{message_id}", get_message_route, major="channel_id")
    add(
        "PATCH",
        "/channels/{channel_id}/messages/{message_id}",
        edit_message_route,
        bucket="channel_messages",
        major="channel_id",
    )
    add(
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}",
        delete_message,
        bucket="channel_messages",
        major="channel_id",
    )
    add("POST", "/channels/{channel_id}/typing", trigger_typing, bucket="typing", major="channel_id")
    reaction = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}"
    own_reaction = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
    add("PUT", own_reaction, add_own_reaction, bucket="reactions", major="channel_id")
    add("DELETE", reaction, remove_reaction, bucket="reactions", major="channel_id")

    add("GET", "/guilds/{guild_id}", get_guild_route, major="guild_id")
    add("GET", "/guilds/{guild_id}/channels", get_guild_channels, major="guild_id")
    add("GET", "/guilds/{guild_id}/roles", get_guild_roles, major="guild_id")
    add("GET", "/guilds/{guild_id}/members/{user_id}", get_member, major="guild_id")

    add("PUT", "/applications/{app_id}/commands", put_global_commands)
    add("GET", "/applications/{app_id}/commands", get_global_commands)
    add("POST", "/applications/{app_id}/commands", upsert_global_command)
    add("DELETE", "/applications/{app_id}/commands/{command_id}", delete_global_command)
    add("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", put_guild_commands, major="guild_id")
    add("GET", "/applications/{app_id}/guilds/{guild_id}/commands", get_guild_commands, major="guild_id")
