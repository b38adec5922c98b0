"""The websocket gateway: HELLO, IDENTIFY/READY, GUILD_CREATE, heartbeats, RESUME, intents and dispatch."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import permissions as perm
from .models import VOICE

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

log = logging.getLogger(__name__)

Json = dict[str, Any]

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_VOICE_STATES = 1 << 7
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
GUILD_MESSAGE_TYPING = 1 << 11
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_REACTIONS = 1 << 13
DIRECT_MESSAGE_TYPING = 1 << 14
MESSAGE_CONTENT = 1 << 15
# Where VOICE_SERVER_UPDATE sends the bot; nothing listens there (voice servers are not emulated).
VOICE_ENDPOINT = "voice.emulator.invalid:443"
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

# Which intent an event needs: (in a guild, in a DM). None means always delivered.
EVENT_INTENTS: dict[str, tuple[int, int] | None] = {
    "GUILD_CREATE": (GUILDS, GUILDS),
    "GUILD_UPDATE": (GUILDS, GUILDS),
    "GUILD_DELETE": (GUILDS, GUILDS),
    "GUILD_ROLE_CREATE": (GUILDS, GUILDS),
    "GUILD_ROLE_UPDATE": (GUILDS, GUILDS),
    "GUILD_ROLE_DELETE": (GUILDS, GUILDS),
    "CHANNEL_CREATE": (GUILDS, GUILDS),
    "CHANNEL_UPDATE": (GUILDS, GUILDS),
    "CHANNEL_DELETE": (GUILDS, GUILDS),
    "THREAD_CREATE": (GUILDS, GUILDS),
    "THREAD_UPDATE": (GUILDS, GUILDS),
    "THREAD_DELETE": (GUILDS, GUILDS),
    "GUILD_MEMBER_ADD": (GUILD_MEMBERS, GUILD_MEMBERS),
    "GUILD_MEMBER_UPDATE": (GUILD_MEMBERS, GUILD_MEMBERS),
    "GUILD_MEMBER_REMOVE": (GUILD_MEMBERS, GUILD_MEMBERS),
    "VOICE_STATE_UPDATE": (GUILD_VOICE_STATES, GUILD_VOICE_STATES),
    "MESSAGE_CREATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_DELETE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_REACTION_ADD": (GUILD_MESSAGE_REACTIONS, DIRECT_MESSAGE_REACTIONS),
    "MESSAGE_REACTION_REMOVE": (GUILD_MESSAGE_REACTIONS, DIRECT_MESSAGE_REACTIONS),
    "TYPING_START": (GUILD_MESSAGE_TYPING, DIRECT_MESSAGE_TYPING),
}


class Connection:
    """One websocket; a single writer task keeps frames in the order they were queued."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Json | Callable[[], None]] = asyncio.Queue()
        self.session: GatewaySession | None = None
        self.writer = asyncio.create_task(self._write())

    def send(self, item: Json | Callable[[], None]) -> None:
        self.queue.put_nowait(item)

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if callable(item):
                item()
                continue
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(item))
            except ConnectionResetError:
                return


@dataclass
class GatewaySession:
    """A resumable session: what was sent under which sequence number, and the live connection if any."""

    session_id: str
    identify: Json
    intents: int
    shard: tuple[int, int]
    seq: int = 0
    sent: list[Json] = field(default_factory=list)
    connection: Connection | None = None

    def dispatch(self, event: str, data: Json) -> None:
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.sent.append(payload)
        if self.connection is not None:
            self.connection.send(payload)


class Gateway:
    """Accepts the bot's websocket, plays Discord's side of the handshake and delivers events."""

    def __init__(self, emu: DiscordEmulator, *, heartbeat_interval_ms: int = 41250) -> None:
        self.emu = emu
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[Connection] = set()
        self.received: list[Json] = []
        self.ready = asyncio.Event()
        self.resumed = 0
        self.privileged_intents = PRIVILEGED
        # Op 4 requests Discord would ignore (unknown guild or channel, missing Connect).
        self.voice_refused: list[Json] = []

    # -- delivery ---------------------------------------------------------------------------------

    def _wants(self, session: GatewaySession, event: str, data: Json) -> bool:
        needs = EVENT_INTENTS.get(event)
        if needs is None:
            return True
        bit = needs[0] if data.get("guild_id") or event.startswith("GUILD_") else needs[1]
        if not session.intents & bit:
            return False
        guild_id = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
        return guild_id is None or self._in_shard(session, int(guild_id))

    @staticmethod
    def _in_shard(session: GatewaySession, guild_id: int) -> bool:
        shard_id, count = session.shard
        return (guild_id >> 22) % count == shard_id

    def _shape(self, session: GatewaySession, event: str, data: Json) -> Json:
        """Apply privileged-intent rules to what one session receives."""
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not session.intents & MESSAGE_CONTENT:
            bot_id = str(self.emu.bot_user.id)
            mentioned = any(m.get("id") == bot_id for m in data.get("mentions", []))
            if data.get("guild_id") and data.get("author", {}).get("id") != bot_id and not mentioned:
                # Without MESSAGE_CONTENT Discord blanks other people's guild messages.
                data = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
                data.pop("poll", None)
        if event == "GUILD_CREATE" and not session.intents & GUILD_MEMBERS:
            # Without GUILD_MEMBERS only the bot itself and members in voice are listed.
            in_voice = {v["user_id"] for v in data.get("voice_states", [])}
            bot_id = str(self.emu.bot_user.id)
            data = {
                **data,
                "members": [m for m in data["members"] if m["user"]["id"] in in_voice | {bot_id}],
            }
        return data

    def dispatch(self, event: str, data: Json) -> None:
        """Send an event to every identified session that asked for it (queued, so ordering holds)."""
        for session in self.sessions.values():
            if self._wants(session, event, data):
                session.dispatch(event, self._shape(session, event, data))

    @property
    def connected(self) -> bool:
        return any(c.session is not None and not c.ws.closed for c in self.connections)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client drops the socket and RESUMEs on resume_gateway_url."""
        for connection in list(self.connections):
            connection.send({"op": RECONNECT, "d": None, "s": None, "t": None})

    async def close(self) -> None:
        for connection in list(self.connections):
            connection.writer.cancel()
            await connection.ws.close(code=1001, message=b"emulator shutting down")

    # -- the socket -------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = Connection(ws)
        self.connections.add(connection)
        connection.send(
            {
                "op": HELLO,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["emulator-gateway"]},
                "s": None,
                "t": None,
            }
        )
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type == WSMsgType.ERROR:
                        break
                    continue
                payload = json.loads(message.data)
                self.received.append(payload)
                await self._on_op(connection, payload)
        finally:
            self.connections.discard(connection)
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            connection.writer.cancel()
        return ws

    async def _on_op(self, connection: Connection, payload: Json) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif op == REQUEST_GUILD_MEMBERS:
            self._member_chunk(connection, data or {})
        elif op == VOICE_STATE_UPDATE:
            self._voice_state_update(connection, data or {})
        elif op == PRESENCE_UPDATE:
            # Recorded in `received`; presences are outside the emulator's scope.
            pass
        else:
            await connection.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, connection: Connection, data: Json) -> None:
        if data.get("token") not in (self.emu.token, f"Bot {self.emu.token}"):
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return
        if connection.session is not None:
            await connection.ws.close(code=4005, message=b"Already authenticated.")
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED & ~self.privileged_intents:
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = tuple(data.get("shard") or (0, 1))
        session = GatewaySession(secrets.token_hex(16), data, intents, (int(shard[0]), int(shard[1])))
        self.sessions[session.session_id] = session
        session.connection = connection
        connection.session = session
        emu = self.emu
        guilds = [g for g in emu.world.guilds.values() if self._in_shard(session, g.id)]
        session.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**emu.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": emu.gateway_url,
                "shard": list(session.shard),
                "application": {"id": str(emu.application_id), "flags": emu.application_flags},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["emulated"],
                "user_settings": {},
                "_trace": ["emulator-gateway"],
            },
        )
        for guild in guilds:
            session.dispatch("GUILD_CREATE", self._shape(session, "GUILD_CREATE", guild.to_payload()))
        connection.send(self.ready.set)

    async def _resume(self, connection: Connection, data: Json) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") not in (self.emu.token, f"Bot {self.emu.token}"):
            connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        seq = int(data.get("seq") or 0)
        session.connection = connection
        connection.session = session
        for payload in session.sent:
            if payload["s"] > seq:
                connection.send(payload)
        self.resumed += 1
        session.dispatch("RESUMED", {"_trace": ["emulator-gateway"]})

    def _voice_state_update(self, connection: Connection, data: Json) -> None:
        """The bot joins, moves or leaves voice (op 4). Discord answers with the bot's VOICE_STATE_UPDATE and,
        when it is in a channel, a VOICE_SERVER_UPDATE naming the voice server. A request Discord would not
        honour (no such voice channel, no View Channel or Connect) gets no answer at all, as on Discord: the
        client times out. The voice server itself (websocket, UDP, DAVE) is not emulated."""
        session = connection.session
        if session is None:
            return
        try:
            guild = self.emu.world.guilds.get(int(data.get("guild_id") or 0))
            channel_id = int(data["channel_id"]) if data.get("channel_id") is not None else None
        except (TypeError, ValueError):
            guild = None
        if guild is None:
            self.voice_refused.append(data)
            return
        bot = self.emu.bot_user
        if channel_id is None:
            if bot.id in guild.voice_states:
                guild.set_voice_state(bot, None, session_id=session.session_id)
            return
        channel = guild.channels.get(channel_id)
        needed = perm.VIEW_CHANNEL | perm.CONNECT
        allowed = channel is not None and guild.bot_member.permissions_in(channel) & needed == needed
        if channel is None or channel.type != VOICE or not allowed:
            self.voice_refused.append(data)
            return
        guild.set_voice_state(
            bot,
            channel,
            session_id=session.session_id,
            self_mute=bool(data.get("self_mute")),
            self_deaf=bool(data.get("self_deaf")),
        )
        session.dispatch(
            "VOICE_SERVER_UPDATE",
            {"token": secrets.token_hex(8), "guild_id": str(guild.id), "endpoint": VOICE_ENDPOINT},
        )

    def _member_chunk(self, connection: Connection, data: Json) -> None:
        session = connection.session
        guild = self.emu.world.guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        members = list(guild.members.values())
        wanted = data.get("user_ids")
        if wanted:
            ids = {int(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if m.id in ids]
        elif data.get("query"):
            query = str(data["query"]).lower()
            members = [m for m in members if m.user.name.lower().startswith(query)]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: Json = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
