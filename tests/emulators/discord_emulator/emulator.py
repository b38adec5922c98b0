"""DiscordEmulator: the loopback Discord a test builds a world in, drives as users, and observes."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from . import permissions as perm
from . import rest, webhooks
from .gateway import Gateway
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    AttachmentSpec,
    AutocompleteResult,
    Interaction,
    OptionBuilder,
    base_payload,
    command_visible,
    modal_submission,
)
from .limits import iter_modal_inputs
from .messages import build_message, compute_pings, wire
from .models import Channel, Guild, Json, Member, User
from .ratelimits import FaultPlan, RateLimiter
from .router import API_PREFIX, RecordedRequest, Router
from .state import World

# A message dict, its id, or anything with an `id` (e.g. a discord.Message in a test).
MessageRef = Json | int | Any
ChannelRef = Channel | int


class DiscordEmulator:
    """An aiohttp server on 127.0.0.1 that the real discord.py client logs into."""

    def __init__(
        self,
        *,
        bot_name: str = "Concord",
        application_id: int | None = None,
        owner_name: str = "owner",
        token: str | None = None,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        heartbeat_interval_ms: int = 41250,
        application_flags: int = 0,
    ) -> None:
        self.world = World(bot_name)
        self.bot_user: User = self.world.bot_user
        # Discord gives a bot the same id as its application unless told otherwise.
        self.application_id: int = application_id or self.bot_user.id
        self.application_flags = application_flags
        self.app_owner: User = self.create_user(owner_name)
        self.token: str = token or f"emu.{self.bot_user.id}.{secrets.token_urlsafe(16)}"
        self.ratelimiter = RateLimiter(rate_limits)
        self.faults = FaultPlan()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.router = Router(self)
        rest.register(self.router)
        webhooks.register(self.router)

        self.requests: list[RecordedRequest] = []
        self.rate_limited: list[RecordedRequest] = []
        self.internal_errors: list[BaseException] = []
        self.dm_channels: list[Channel] = []
        self.typing: list[int] = []
        self.interactions: list[Interaction] = []
        self._interactions: dict[int, Interaction] = {}
        self._interactions_by_token: dict[str, Interaction] = {}
        self._global_commands: dict[str, Json] = {}
        self._guild_commands: dict[int, dict[str, Json]] = {}
        self._message_changed = asyncio.Event()
        # Discord's 3 s window for the first callback; tests of slow bots may shrink it.
        self.callback_deadline = 3.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving REST, the gateway and attachments."""
        # Uploads over Discord's limit must reach the emulator so it can answer 413 with Discord's body.
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.router.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{file_id}/{filename}", self._serve_attachment)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.world.http_base = f"http://127.0.0.1:{self.port}"
        self.world.sink = self.gateway.dispatch

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        hosted = self.world.files.get(int(request.match_info["file_id"]))
        if hosted is None:
            raise web.HTTPNotFound()
        return web.Response(body=hosted.data, content_type=hosted.content_type)

    def application_payload(self) -> Json:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "owner": self.app_owner.to_payload(),
            "team": None,
            "bot": self.bot_user.to_payload(),
            "tags": [],
            "install_params": None,
            "custom_install_url": None,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.world.guilds),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
        }

    async def wait_until_ready(self, timeout: float = 10) -> None:  # noqa: ASYNC109 (the agreed API)
        """Wait until the bot IDENTIFYed and READY plus every GUILD_CREATE has been written to it."""
        try:
            await asyncio.wait_for(self.gateway.ready.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the bot did not identify within {timeout}s") from None

    # -- world building ---------------------------------------------------------------------------------

    def create_user(self, name: str, global_name: str | None = None, bot: bool = False) -> User:
        return self.world.add_user(name, global_name=global_name, bot=bot)

    def create_guild(
        self,
        name: str,
        owner: User | None = None,
        *,
        bot_permissions: int = perm.DEFAULT_BOT,
        everyone_permissions: int = perm.DEFAULT_EVERYONE,
        premium_tier: int = 0,
        locale: str = "en-US",
    ) -> Guild:
        """A guild with @everyone, a managed role for the bot, the bot and the owner as members."""
        owner = owner or self.app_owner
        guild = Guild(
            self.world.snowflake(),
            name,
            owner.id,
            self.world,
            premium_tier=premium_tier,
            preferred_locale=locale,
        )
        everyone = guild._add_role("@everyone", everyone_permissions)
        guild.roles.pop(everyone.id)
        everyone.id = guild.id
        guild.roles[guild.id] = everyone
        bot_role = guild._add_role(self.bot_user.name, bot_permissions, managed=True, bot_id=self.bot_user.id)
        guild.members[self.bot_user.id] = Member(self.bot_user, guild, [bot_role])
        guild.members[owner.id] = Member(owner, guild)
        self.world.guilds[guild.id] = guild
        self.world.dispatch("GUILD_CREATE", guild.to_payload())
        return guild

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the user and the bot (type 1)."""
        return self.world.dm_channel(user)

    def close_dms(self, user: User) -> None:
        """The user refuses DMs: the bot's sends there get 403 code 50007."""
        self.world.dms_closed.add(user.id)

    def set_privileged_intents(self, intents: int) -> None:
        """Which privileged intents the developer portal allows (IDENTIFY asking for others → close 4014)."""
        self.gateway.privileged_intents = intents

    def configure_rate_limit(self, bucket: str, limit: int, per: float) -> None:
        """Resize a bucket: channel_messages, webhook, reactions, typing, dm_open or default."""
        self.ratelimiter.configure(bucket, limit, per)

    # -- users acting -----------------------------------------------------------------------------------

    def _member_or_user(self, user: User | Member) -> User:
        return user.user if isinstance(user, Member) else user

    def _check_can_see(self, user: User, channel: Channel) -> None:
        if channel.guild is not None:
            member = channel.guild.get_member(user)
            if not member.permissions_in(channel) & perm.VIEW_CHANNEL:
                raise AssertionError(f"{user.name} cannot see #{channel.name}")
        elif channel.recipient is not None and channel.recipient.id != user.id:
            raise AssertionError(f"{user.name} is not in that DM")

    def notify_messages(self) -> None:
        self._message_changed.set()
        self._message_changed = asyncio.Event()

    async def send_message(
        self,
        author: User | Member,
        channel: Channel,
        content: str = "",
        *,
        attachments: Sequence[AttachmentSpec] = (),
        reply_to: MessageRef | None = None,
        embeds: list[Json] | None = None,
    ) -> Json:
        """A user posts a message; the bot gets MESSAGE_CREATE. Returns the stored message."""
        author = self._member_or_user(author)
        self._check_can_see(author, channel)
        hosted = []
        for spec in attachments:
            if isinstance(spec, dict):
                hosted.append(spec)
            else:
                content_type = spec[2] if len(spec) == 3 else "application/octet-stream"
                hosted.append(self.world.host_file(channel.id, spec[0], spec[1], content_type))
        reference = None
        if reply_to is not None:
            reference = self.world.find(channel.id, self._message_id(reply_to))
            if reference is None:
                raise AssertionError(f"no message {reply_to!r} in that channel to reply to")
        replied = self.world.users.get(reference["_author_id"]) if reference else None
        pings = compute_pings(
            self.world, channel, author, content, allowed_mentions=None, replied_author=replied
        )
        message = build_message(
            self.world,
            channel,
            author,
            content=content,
            embeds=embeds,
            attachments=hosted,
            reference=reference,
            pings=pings,
        )
        self.world.store(message)
        self.world.dispatch("MESSAGE_CREATE", wire(message))
        self.notify_messages()
        return message

    async def add_reaction(
        self, user: User | Member, message: MessageRef, emoji: str, channel: Channel
    ) -> None:
        """A user reacts (unicode emoji or "name:id"); the bot gets MESSAGE_REACTION_ADD."""
        found = self.world.find(channel.id, self._message_id(message))
        if found is None:
            raise AssertionError("no such message")
        rest.change_reaction(self, channel, found, self._member_or_user(user).id, emoji, True)

    async def delete_message(self, message: MessageRef, channel: Channel) -> None:
        """A user (or moderator) deletes a message; the bot gets MESSAGE_DELETE."""
        found = self.world.find(channel.id, self._message_id(message))
        if found is None:
            raise AssertionError("no such message")
        rest.dispatch_delete(self, found)

    @staticmethod
    def _message_id(ref: MessageRef) -> int:
        if isinstance(ref, dict):
            return int(ref["id"])
        return int(getattr(ref, "id", ref))

    def _channel(self, ref: ChannelRef) -> Channel:
        if isinstance(ref, Channel):
            return ref
        channel = self.world.channels.get(int(getattr(ref, "id", ref)))
        if channel is None:
            raise AssertionError(f"no channel {ref!r}")
        return channel

    def _register(self, itx: Interaction) -> Interaction:
        itx.callback_deadline = self.callback_deadline
        self.interactions.append(itx)
        self._interactions[itx.id] = itx
        self._interactions_by_token[itx.token] = itx
        self.world.dispatch("INTERACTION_CREATE", itx.payload)
        return itx

    def find_command(self, name: str, guild: Guild | None) -> Json:
        """The synced chat-input command a user would pick: guild commands shadow global ones."""
        pools = []
        if guild is not None:
            pools.append(self._guild_commands.get(guild.id, {}))
        pools.append(self._global_commands)
        for pool in pools:
            command = pool.get(f"{name}#1")
            if command is not None:
                return command
        synced = sorted(c["name"] for pool in pools for c in pool.values())
        raise AssertionError(
            f"/{name} is not synced (synced commands here: {synced}); did the test sync the tree?"
        )

    def _command_data(
        self,
        user: User,
        command_path: str,
        options: dict[str, Any],
        channel: Channel,
        *,
        focused: str | None,
        ignore_default_permissions: bool,
    ) -> Json:
        names = command_path.split()
        guild = channel.guild
        schema = self.find_command(names[0], guild)
        member = guild.get_member(user) if guild is not None else None
        hidden = command_visible(
            schema, guild=guild, member=member, ignore_permissions=ignore_default_permissions
        )
        if hidden:
            raise AssertionError(f"Discord would not offer /{names[0]} to {user.name} here: {hidden}")
        builder = OptionBuilder(self.world, guild, channel, user, command_path)
        data: Json = {"id": schema["id"], "name": schema["name"], "type": 1}
        if "guild_id" in schema:
            data["guild_id"] = schema["guild_id"]
        # Walk "group sub": each level is one option of type 2 (group) or 1 (subcommand).
        level_schema: list[Json] = schema.get("options") or []
        container = data
        for name in names[1:]:
            sub = next((o for o in level_schema if o["name"] == name and o["type"] in (1, 2)), None)
            if sub is None:
                raise AssertionError(f"/{command_path}: no subcommand or group {name!r} in the synced schema")
            entry: Json = {"name": name, "type": sub["type"], "options": []}
            container["options"] = [entry]
            container = entry
            level_schema = sub.get("options") or []
        if any(o["type"] in (1, 2) for o in level_schema):
            raise AssertionError(f"/{command_path} needs a subcommand: {[o['name'] for o in level_schema]}")
        container["options"] = builder.build(level_schema, options, focused=focused)
        if builder.resolved:
            data["resolved"] = builder.resolved
        return data

    async def run_command(
        self,
        user: User | Member,
        command: str,
        options: dict[str, Any] | None = None,
        channel: Channel | None = None,
        *,
        locale: str = "en-US",
        ignore_default_permissions: bool = False,
    ) -> Interaction:
        """A user runs a slash command ("config show" for subcommands); the bot gets INTERACTION_CREATE."""
        user = self._member_or_user(user)
        channel = channel or self.dm_channel(user)
        self._check_can_see(user, channel)
        data = self._command_data(
            user,
            command,
            options or {},
            channel,
            focused=None,
            ignore_default_permissions=ignore_default_permissions,
        )
        payload = base_payload(
            self.world,
            application_id=self.application_id,
            kind=APPLICATION_COMMAND,
            user=user,
            channel=channel,
            data=data,
            locale=locale,
        )
        return self._register(Interaction(self.world, payload=payload, user=user, channel=channel))

    async def run_message_command(
        self, user: User | Member, name: str, message: MessageRef, channel: Channel, *, locale: str = "en-US"
    ) -> Interaction:
        """A user picks an app from a message's menu ("Apps" → name); the bot gets a type 3 command."""
        user = self._member_or_user(user)
        self._check_can_see(user, channel)
        guild = channel.guild
        schema = None
        pools = [self._guild_commands.get(guild.id, {})] if guild is not None else []
        for pool in [*pools, self._global_commands]:
            schema = pool.get(f"{name}#3")
            if schema is not None:
                break
        if schema is None:
            raise AssertionError(f"no message command {name!r} is synced; did the test sync the tree?")
        member = guild.get_member(user) if guild is not None else None
        hidden = command_visible(schema, guild=guild, member=member, ignore_permissions=False)
        if hidden:
            raise AssertionError(f"Discord would not offer {name!r} to {user.name} here: {hidden}")
        target = self.world.find(channel.id, self._message_id(message))
        if target is None:
            raise AssertionError(f"no message {message!r} in that channel")
        data: Json = {
            "id": schema["id"],
            "name": schema["name"],
            "type": 3,
            "target_id": str(target["id"]),
            "resolved": {"messages": {str(target["id"]): wire(target)}},
        }
        if "guild_id" in schema:
            data["guild_id"] = schema["guild_id"]
        payload = base_payload(
            self.world,
            application_id=self.application_id,
            kind=APPLICATION_COMMAND,
            user=user,
            channel=channel,
            data=data,
            locale=locale,
        )
        return self._register(Interaction(self.world, payload=payload, user=user, channel=channel))

    async def autocomplete(
        self,
        user: User | Member,
        command: str,
        option: str,
        value: str = "",
        channel: Channel | None = None,
        *,
        options: dict[str, Any] | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,  # noqa: ASYNC109 (the agreed API)
    ) -> AutocompleteResult:
        """A user types into an autocomplete option; waits for the bot's choices (type 8) and returns them."""
        user = self._member_or_user(user)
        channel = channel or self.dm_channel(user)
        given = {**(options or {}), option: value}
        data = self._command_data(
            user, command, given, channel, focused=option, ignore_default_permissions=False
        )
        payload = base_payload(
            self.world,
            application_id=self.application_id,
            kind=AUTOCOMPLETE,
            user=user,
            channel=channel,
            data=data,
            locale=locale,
        )
        itx = AutocompleteResult(self.world, payload=payload, user=user, channel=channel)
        self._register(itx)
        await itx.wait_for_response(timeout)
        return itx

    def _find_component(self, components: list[Json], custom_id: str) -> Json | None:
        for component in components:
            if component.get("custom_id") == custom_id:
                return component
            for key in ("components",):
                found = self._find_component(component.get(key) or [], custom_id)
                if found is not None:
                    return found
            accessory = component.get("accessory")
            if isinstance(accessory, dict) and accessory.get("custom_id") == custom_id:
                return accessory
        return None

    async def _component(
        self, user: User | Member, message: MessageRef, custom_id: str, values: list[str] | None, locale: str
    ) -> Interaction:
        user = self._member_or_user(user)
        message_id = self._message_id(message)
        stored = None
        for channel_id in list(self.world.messages):
            stored = self.world.find(channel_id, message_id)
            if stored is not None:
                break
        if stored is None:
            stored = self.world.ephemeral.get(message_id)
        if stored is None:
            raise AssertionError(f"message {message_id} does not exist (deleted?)")
        channel = self.world.channels[int(stored["channel_id"])]
        component = self._find_component(stored.get("components") or [], custom_id)
        if component is None:
            raise AssertionError(f"message {message_id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise AssertionError(f"component {custom_id!r} is disabled; a user cannot use it")
        data: Json = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = list(values)
        payload = base_payload(
            self.world,
            application_id=self.application_id,
            kind=MESSAGE_COMPONENT,
            user=user,
            channel=channel,
            data=data,
            locale=locale,
            message=wire(stored),
        )
        itx = Interaction(
            self.world, payload=payload, user=user, channel=channel, source_message_id=message_id
        )
        return self._register(itx)

    async def press_button(
        self, user: User | Member, message: MessageRef, custom_id: str, *, locale: str = "en-US"
    ) -> Interaction:
        """A user clicks a button on a message; the bot gets a component interaction (type 3)."""
        return await self._component(user, message, custom_id, None, locale)

    async def choose(
        self,
        user: User | Member,
        message: MessageRef,
        custom_id: str,
        values: list[str],
        *,
        locale: str = "en-US",
    ) -> Interaction:
        """A user picks values in a select menu on a message (type 3 with `values`)."""
        return await self._component(user, message, custom_id, values, locale)

    async def submit_modal(
        self,
        user: User | Member,
        itx: Interaction,
        custom_id: str,
        values: dict[str, Any],
        *,
        locale: str = "en-US",
    ) -> Interaction:
        """A user fills in and submits the modal the bot opened for `itx` (type 5)."""
        user = self._member_or_user(user)
        if itx.response_type != webhooks.MODAL or itx.modal is None:
            raise AssertionError(f"the bot answered {itx!r} without a modal")
        if itx.modal.get("custom_id") != custom_id:
            raise AssertionError(f"the open modal is {itx.modal.get('custom_id')!r}, not {custom_id!r}")
        inputs = {c["custom_id"]: c for c in iter_modal_inputs(itx.modal.get("components") or [])}
        unknown = set(values) - set(inputs)
        if unknown:
            raise AssertionError(
                f"modal {custom_id!r} has no field(s) {sorted(unknown)}; fields: {sorted(inputs)}"
            )
        for field_id, component in inputs.items():
            if component.get("type") == 4 and component.get("required", True) and not values.get(field_id):
                raise AssertionError(f"modal field {field_id!r} is required")
        data = {
            "custom_id": custom_id,
            "components": modal_submission(itx.modal.get("components") or [], values),
        }
        source = itx.source_message_id
        message = None
        if source is not None:
            found = self.world.find(itx.channel.id, source, ephemeral=True)
            message = wire(found) if found else None
        payload = base_payload(
            self.world,
            application_id=self.application_id,
            kind=MODAL_SUBMIT,
            user=user,
            channel=itx.channel,
            data=data,
            locale=locale,
            message=message,
        )
        submitted = Interaction(
            self.world, payload=payload, user=user, channel=itx.channel, source_message_id=source
        )
        return self._register(submitted)

    async def request_reconnect(self) -> None:
        """Ask the client to reconnect (op 7); it comes back with RESUME."""
        await self.gateway.request_reconnect()

    # -- observation ------------------------------------------------------------------------------------

    def messages(self, channel: ChannelRef, *, include_ephemeral: bool = False) -> list[Json]:
        """Current messages in the channel, oldest first (edits applied, deletes removed)."""
        return self.world.history(self._channel(channel).id, include_ephemeral=include_ephemeral)

    async def wait_for_message(
        self,
        channel: ChannelRef,
        predicate: Callable[[Json], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the agreed API)
        *,
        after: MessageRef | None = None,
        include_ephemeral: bool = False,
    ) -> Json:
        """The first message in the channel matching predicate (default: sent by the bot), waiting for it."""
        channel = self._channel(channel)
        after_id = self._message_id(after) if after is not None else 0
        bot_id = self.bot_user.id

        def matches(message: Json) -> bool:
            if int(message["id"]) <= after_id:
                return False
            if predicate is None:
                return bool(message["_author_id"] == bot_id)
            return predicate(message)

        try:
            async with asyncio.timeout(timeout):
                while True:
                    for message in self.messages(channel, include_ephemeral=include_ephemeral):
                        if matches(message):
                            return message
                    await self._message_changed.wait()
        except TimeoutError:
            seen = [
                ("bot" if m["_author_id"] == bot_id else "user", m["content"][:80])
                for m in self.messages(channel)
            ]
            raise AssertionError(
                f"no matching message in #{channel.name} within {timeout}s; have {seen}"
            ) from None

    @property
    def global_commands(self) -> list[Json]:
        return list(self._global_commands.values())

    def guild_commands(self, guild: Guild) -> list[Json]:
        return list(self._guild_commands.get(guild.id, {}).values())

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches and whose path matches the regex (re.search)."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    def attachment_bytes(self, attachment: Json) -> bytes:
        """The bytes behind an attachment object the emulator hosts."""
        return self.world.files[int(attachment["id"])].data

    # -- faults -----------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        body: Any = None,
        times: int = 1,
        *,
        retry_after: float = 0.1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` matching requests (method or "*", path regex via re.search)."""
        self.faults.fail_next(
            method,
            path_regex,
            status=status,
            body=body,
            times=times,
            retry_after=retry_after,
            headers=headers,
        )

    def delay(self, path_regex: str, seconds: float, *, method: str = "*", times: int | None = None) -> None:
        """Hold matching requests for `seconds` before answering (all of them unless `times` is given)."""
        self.faults.delay(path_regex, seconds, method=method, times=times)
