"""Interactions a user starts (commands, autocomplete, buttons, modals): payloads and the test-side handle."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import permissions as perm
from .models import Channel, Guild, Json, Member, Role, User
from .state import World

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
OPTION_TYPE_NAMES = {
    STRING: "string",
    INTEGER: "integer",
    BOOLEAN: "boolean",
    USER: "user",
    CHANNEL: "channel",
    ROLE: "role",
    MENTIONABLE: "mentionable",
    NUMBER: "number",
    ATTACHMENT: "attachment",
}

# Interactions must be answered within 3 s; the token then lives 15 minutes.
CALLBACK_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60.0

AttachmentSpec = tuple[str, bytes] | tuple[str, bytes, str] | Json


class Interaction:
    """What the user sees of one interaction: the bot's callback, the original response and followups."""

    def __init__(
        self,
        world: World,
        *,
        payload: Json,
        user: User,
        channel: Channel,
        source_message_id: int | None = None,
    ) -> None:
        self._world = world
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.user = user
        self.channel = channel
        self.created_at = time.monotonic()
        self.callback_deadline = CALLBACK_DEADLINE
        self.token_lifetime = TOKEN_LIFETIME
        self.expired = False
        self.response_type: int | None = None
        self.ephemeral = False
        self.callback_body: Json | None = None
        self.modal: Json | None = None
        self.choices: list[Json] | None = None
        # A component interaction's @original is the message carrying the component.
        self.source_message_id = source_message_id
        self.original_id: int | None = None
        self.followup_ids: list[int] = []
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Interaction id={self.id} type={self.type} response_type={self.response_type}>"

    # -- what the user sees ---------------------------------------------------------------------

    @property
    def original(self) -> Json | None:
        """The original response as it is now (edits applied); None before it exists or once deleted."""
        if self.original_id is None:
            return None
        return self._world.find(self.channel.id, self.original_id, ephemeral=True)

    @property
    def followups(self) -> list[Json]:
        """Followup messages still existing, in the order sent, edits applied."""
        found = (self._world.find(self.channel.id, mid, ephemeral=True) for mid in self.followup_ids)
        return [m for m in found if m is not None]

    @property
    def responded(self) -> bool:
        return self.response_type is not None

    # -- token lifetime -------------------------------------------------------------------------

    def expire(self) -> None:
        """Pretend the 15 minutes have passed: webhook calls now get 404 Unknown Webhook."""
        self.expired = True

    def token_valid(self) -> bool:
        return not self.expired and time.monotonic() - self.created_at < self.token_lifetime

    def callback_too_late(self) -> bool:
        return self.expired or time.monotonic() - self.created_at > self.callback_deadline

    # -- waiting --------------------------------------------------------------------------------

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[Interaction], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (the agreed API)
    ) -> Interaction:
        """Wait until predicate(self) holds; AssertionError with the current state if it never does."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"interaction {self.id} never reached the expected state within {timeout}s: "
                f"response_type={self.response_type}, original={self.original!r}, "
                f"followups={[m.get('content') for m in self.followups]!r}"
            ) from None
        return self

    async def wait_for_response(self, timeout: float = 5.0) -> Interaction:  # noqa: ASYNC109
        """Wait for the bot's interaction callback."""
        return await self.wait_for(lambda itx: itx.responded, timeout)

    async def wait_for_followup(self, count: int = 1, timeout: float = 5.0) -> Json:  # noqa: ASYNC109
        """Wait until `count` followups exist and return the last of them."""
        await self.wait_for(lambda itx: len(itx.followups) >= count, timeout)
        return self.followups[count - 1]


class AutocompleteResult(Interaction):
    """An autocomplete interaction that also reads as the list of choices the bot answered."""

    def _list(self) -> list[Json]:
        return self.choices or []

    def __iter__(self) -> Iterator[Json]:
        return iter(self._list())

    def __len__(self) -> int:
        return len(self._list())

    def __getitem__(self, index: int) -> Json:
        return self._list()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self._list() == other
        return self is other

    __hash__ = object.__hash__


# -- payload building ---------------------------------------------------------------------------


def channel_for_interaction(channel: Channel, member: Member | None) -> Json:
    payload = channel.to_payload()
    if member is not None:
        payload["permissions"] = str(member.permissions_in(channel))
    return payload


def base_payload(
    world: World,
    *,
    application_id: int,
    kind: int,
    user: User,
    channel: Channel,
    data: Json | None,
    locale: str,
    message: Json | None = None,
) -> Json:
    """The fields every interaction carries, with who, where, and what the bot may do there."""
    guild = channel.guild
    payload: Json = {
        "id": str(world.snowflake()),
        "application_id": str(application_id),
        "type": kind,
        "token": "itx." + secrets.token_urlsafe(24),
        "version": 1,
        "channel_id": str(channel.id),
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
    }
    if data is not None:
        payload["data"] = data
    if message is not None:
        payload["message"] = message
    if guild is not None:
        member = guild.get_member(user)
        payload["guild_id"] = str(guild.id)
        payload["guild"] = {"id": str(guild.id), "locale": guild.preferred_locale, "features": []}
        payload["guild_locale"] = guild.preferred_locale
        payload["member"] = {**member.to_payload(), "permissions": str(member.permissions_in(channel))}
        payload["channel"] = channel_for_interaction(channel, member)
        payload["app_permissions"] = str(guild.bot_member.permissions_in(channel))
        payload["authorizing_integration_owners"] = {"0": str(guild.id)}
        payload["context"] = 0
        payload["attachment_size_limit"] = guild.upload_limit
    else:
        payload["user"] = user.to_payload()
        payload["channel"] = channel.to_payload()
        payload["app_permissions"] = str(perm.DM_PERMISSIONS)
        # A guild-installed app answering in its own DM reports "0" as the installing guild.
        payload["authorizing_integration_owners"] = {"0": "0"}
        payload["context"] = 1
        payload["attachment_size_limit"] = 10 * 1024 * 1024
    return payload


def interaction_metadata(itx: Interaction) -> Json:
    """What a response message says about the interaction that produced it."""
    meta: Json = {
        "id": str(itx.id),
        "type": itx.type,
        "user": itx.user.to_payload(),
        "authorizing_integration_owners": itx.payload.get("authorizing_integration_owners", {}),
    }
    if itx.type == APPLICATION_COMMAND:
        meta["name"] = itx.payload["data"]["name"]
        meta["command_type"] = 1
    if itx.source_message_id is not None:
        meta["interacted_message_id"] = str(itx.source_message_id)
    return meta


class OptionBuilder:
    """Turns a test's `options={...}` into typed interaction options, checked against the synced schema."""

    def __init__(
        self, world: World, guild: Guild | None, channel: Channel, invoker: User, command: str
    ) -> None:
        self.world = world
        self.guild = guild
        self.channel = channel
        self.invoker = invoker
        self.command = command
        self.resolved: Json = {}

    def _fail(self, message: str) -> AssertionError:
        return AssertionError(f"/{self.command}: {message}")

    def _resolve(self, kind: str, key: int, value: Json) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = value

    def _resolve_user(self, target: User | Member | int) -> int:
        user_id = target if isinstance(target, int) else target.id
        user = self.world.users.get(user_id)
        if user is None:
            raise self._fail(f"unknown user {user_id}")
        self._resolve("users", user.id, user.to_payload())
        if self.guild is not None and user.id in self.guild.members:
            member = self.guild.members[user.id]
            self._resolve(
                "members",
                user.id,
                {
                    **member.to_payload(include_user=False),
                    "permissions": str(member.permissions_in(self.channel)),
                },
            )
        return user.id

    def _resolve_role(self, role: Role) -> int:
        self._resolve("roles", role.id, role.to_payload())
        return role.id

    def _resolve_channel(self, target: Channel | int, schema: Json) -> int:
        channel = self.world.channels.get(target if isinstance(target, int) else target.id)
        if channel is None or channel.guild is not self.guild:
            raise self._fail(f"option {schema['name']!r}: channel is not in this guild")
        allowed = schema.get("channel_types")
        if allowed and channel.type not in allowed:
            raise self._fail(f"option {schema['name']!r}: channel type {channel.type} not in {allowed}")
        payload: Json = {"id": str(channel.id), "name": channel.name, "type": channel.type, "flags": 0}
        payload["guild_id"] = str(channel.guild.id) if channel.guild else None
        payload["parent_id"] = str(channel.parent_id) if channel.parent_id else None
        if channel.guild is not None:
            member = channel.guild.get_member(self.invoker)
            payload["permissions"] = str(member.permissions_in(channel))
        if channel.is_thread:
            payload["thread_metadata"] = channel.to_payload()["thread_metadata"]
        self._resolve("channels", channel.id, payload)
        return channel.id

    def _resolve_attachment(self, spec: AttachmentSpec) -> int:
        if isinstance(spec, dict):
            attachment = spec
        else:
            filename, data = spec[0], spec[1]
            content_type = spec[2] if len(spec) == 3 else "application/octet-stream"
            attachment = self.world.host_file(self.channel.id, filename, data, content_type)
        self._resolve("attachments", int(attachment["id"]), {**attachment, "ephemeral": True})
        return int(attachment["id"])

    def convert(self, schema: Json, value: Any) -> Any:
        """The option's wire value; resolved objects are collected for `data.resolved`."""
        name, kind = schema["name"], schema["type"]
        want = OPTION_TYPE_NAMES.get(kind, str(kind))
        if kind == STRING:
            if not isinstance(value, str):
                raise self._fail(f"option {name!r} is a string, got {value!r}")
            if len(value) < schema.get("min_length", 0) or len(value) > schema.get("max_length", 6000):
                raise self._fail(f"option {name!r}: length {len(value)} outside the synced bounds")
        elif kind == INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._fail(f"option {name!r} is an integer, got {value!r}")
        elif kind == NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._fail(f"option {name!r} is a number, got {value!r}")
        elif kind == BOOLEAN:
            if not isinstance(value, bool):
                raise self._fail(f"option {name!r} is a boolean, got {value!r}")
        elif kind == USER:
            if not isinstance(value, User | Member | int) or isinstance(value, bool):
                raise self._fail(f"option {name!r} is a user, got {value!r}")
            return str(self._resolve_user(value))
        elif kind == CHANNEL:
            if not isinstance(value, Channel | int) or isinstance(value, bool):
                raise self._fail(f"option {name!r} is a channel, got {value!r}")
            return str(self._resolve_channel(value, schema))
        elif kind == ROLE:
            if not isinstance(value, Role):
                raise self._fail(f"option {name!r} is a role, got {value!r}")
            return str(self._resolve_role(value))
        elif kind == MENTIONABLE:
            if isinstance(value, Role):
                return str(self._resolve_role(value))
            if isinstance(value, User | Member):
                return str(self._resolve_user(value))
            raise self._fail(f"option {name!r} is a mentionable (user or role), got {value!r}")
        elif kind == ATTACHMENT:
            if not isinstance(value, tuple | dict):
                raise self._fail(f"option {name!r} is an attachment (filename, bytes[, type]), got {value!r}")
            return str(self._resolve_attachment(value))
        else:
            raise self._fail(f"option {name!r} has unsupported type {want}")
        if kind in (INTEGER, NUMBER):
            low, high = schema.get("min_value"), schema.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise self._fail(f"option {name!r}: {value} outside [{low}, {high}]")
        choices = schema.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise self._fail(
                f"option {name!r}: {value!r} is not one of the choices {[c['value'] for c in choices]}"
            )
        return value

    def build(
        self, schema_options: list[Json], given: dict[str, Any], *, focused: str | None = None
    ) -> list[Json]:
        by_name = {o["name"]: o for o in schema_options}
        unknown = set(given) - set(by_name)
        if focused is not None and focused not in by_name:
            unknown.add(focused)
        if unknown:
            raise self._fail(f"unknown option(s) {sorted(unknown)}; synced options are {sorted(by_name)}")
        out: list[Json] = []
        for schema in schema_options:
            name = schema["name"]
            if name == focused:
                if not schema.get("autocomplete"):
                    raise self._fail(f"option {name!r} has no autocomplete in the synced schema")
                # While typing, Discord sends the partial text as a string whatever the option's type.
                out.append(
                    {"name": name, "type": schema["type"], "value": str(given.get(name, "")), "focused": True}
                )
                continue
            if name not in given:
                if schema.get("required") and focused is None:
                    raise self._fail(f"required option {name!r} missing")
                continue
            out.append({"name": name, "type": schema["type"], "value": self.convert(schema, given[name])})
        return out


def command_visible(
    schema: Json, *, guild: Guild | None, member: Member | None, ignore_permissions: bool
) -> str | None:
    """Why Discord would not offer this command here (None if it would)."""
    contexts = schema.get("contexts")
    context = 0 if guild is not None else 1
    if contexts is not None and context not in contexts:
        return f"not available in context {context} (synced contexts {contexts})"
    if contexts is None and guild is None and schema.get("dm_permission") is False:
        return "dm_permission is false"
    required = schema.get("default_member_permissions")
    if required is not None and member is not None and not ignore_permissions:
        needed = int(required)
        have = member.permissions
        if not have & perm.ADMINISTRATOR and have != perm.ALL and (needed == 0 or have & needed != needed):
            return f"member lacks default_member_permissions {needed}"
    return None


def modal_submission(components: list[Json], values: dict[str, Any]) -> list[Json]:
    """Mirror a modal's layout with the values typed in (rows stay rows, labels stay labels)."""
    out: list[Json] = []
    for component in components:
        kind = component.get("type")
        if kind == 1:
            out.append({"type": 1, "components": modal_submission(component.get("components") or [], values)})
        elif kind == 18 and isinstance(component.get("component"), dict):
            inner = modal_submission([component["component"]], values)
            entry: Json = {"type": 18, "component": inner[0] if inner else {}}
            if "id" in component:
                entry["id"] = component["id"]
            out.append(entry)
        elif component.get("custom_id") is not None:
            custom_id = component["custom_id"]
            if kind == 4:
                out.append({"type": 4, "custom_id": custom_id, "value": values.get(custom_id, "")})
            else:
                chosen: list[str] = values.get(custom_id, [])
                out.append({"type": kind, "custom_id": custom_id, "values": list(chosen)})
    return out
