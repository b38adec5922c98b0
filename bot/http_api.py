"""The optional HTTP endpoint: `POST /send-data` (seed 000's payload, guild-scoped keys), `GET /healthz`."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.discordkit.send_data_post import PostOrigin, PostRefused, post_send_data
from bot.services.api_keys import KeyInfo, hash_key
from bot.services.quotas import Denial, Window, WindowCounter
from bot.store.engine import ping as ping_database

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # 10 full embeds are ~25 KiB of UTF-8; anything bigger is not a message
RATE_FEATURE = "send_data"
HEALTH_DB_TIMEOUT = 2.0
AUTH_FAILURES_PER_MINUTE = 10  # per client address; then no key is looked up until the minute ends
TRUSTED_KEY_SECONDS = 3600.0  # a key that authenticated this recently is never held back by its address


class AddressLimiter:
    """Counts failed authentications per client address in fixed minutes, in memory: a flood of bad keys
    is turned away before it costs a database query. Keys seen valid recently pass regardless, so a bad
    client behind the same proxy as a good one cannot lock the good one out."""

    def __init__(self, limit: int = AUTH_FAILURES_PER_MINUTE, *, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._failures: dict[str, tuple[int, int]] = {}  # address -> (minute, failures)
        self._trusted: dict[str, float] = {}  # key hash -> trusted until

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def retry_after(self, address: str, secret: str | None) -> int | None:
        """Seconds until this address may try again, or None when the request may go on."""
        if secret is not None and self._trusted.get(hash_key(secret), 0.0) > self.clock():
            return None
        minute, failures = self._failures.get(address, (self._minute(), 0))
        if minute != self._minute() or failures < self.limit:
            return None
        return max(1, math.ceil((minute + 1) * 60 - self.clock()))

    def failed(self, address: str) -> None:
        minute, failures = self._failures.get(address, (self._minute(), 0))
        if minute != self._minute():
            minute, failures = self._minute(), 0
        if len(self._failures) > 10_000:  # a spray of addresses: forget the old minutes
            now = self._minute()
            self._failures = {a: v for a, v in self._failures.items() if v[0] == now}
        self._failures[address] = (minute, failures + 1)

    def succeeded(self, secret: str) -> None:
        if len(self._trusted) > 10_000:
            now = self.clock()
            self._trusted = {k: until for k, until in self._trusted.items() if until > now}
        self._trusted[hash_key(secret)] = self.clock() + TRUSTED_KEY_SECONDS


class Refused(Exception):
    """A request that ends with an HTTP error; carries what the audit row and the JSON body need."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"error": self.error, "message": self.message, **self.extra}
        return web.json_response(body, status=self.status, headers=self.headers)


def bearer_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class SendDataServer:
    """aiohttp app bound to HTTP_HOST:HTTP_PORT; posts through the running bot."""

    def __init__(self, bot: Concord, *, host: str, port: int, rate_per_minute: int) -> None:
        self.bot = bot
        self.host = host
        self.requested_port = port
        self.rate_per_minute = rate_per_minute
        self.keys = bot.api_keys
        self.audit = bot.send_audit
        self.rate = WindowCounter(bot.db_sessions)
        self.failures = AddressLimiter()
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post("/send-data", self.send_data)
        self.app.router.add_get("/healthz", self.healthz)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        await site.start()
        # Port 0 asks the OS for a free port (tests); read back the one we got.
        self.port = int(self._runner.addresses[0][1])
        log.info("HTTP endpoint listening on %s:%s (POST /send-data, GET /healthz)", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- POST /send-data -----------------------------------------------------------------------

    async def send_data(self, request: web.Request) -> web.Response:
        address = request.remote or "unknown"
        wait = self.failures.retry_after(address, bearer_key(request))
        if wait is not None:
            sentence = f"Too many requests with a missing or bad key from this address; retry in {wait} s."
            self.audit.note_refused(remote=address, status=429, detail=f"auth_rate_limited: {sentence}")
            refused = Refused(
                429,
                "rate_limited",
                sentence,
                extra={"retry_after": wait},
                headers={"Retry-After": str(wait)},
            )
            return refused.response()
        key: KeyInfo | None = None
        try:
            key = await self._authenticate(request)
            await self._rate_limit(key)
            body = await self._read_body(request)
        except Refused as refused:
            await self._audit(request, key, refused.status, f"{refused.error}: {refused.message}")
            return refused.response()
        assert key is not None
        origin = PostOrigin("http", key.guild_id, api_key_id=key.id, remote=request.remote)
        try:
            message = await post_send_data(self.bot, body, origin)
        except PostRefused as refused:
            return web.json_response(refused.as_json(), status=refused.status)
        return web.json_response({"ok": True, "id": str(message.id), "channelId": str(message.channel.id)})

    async def _authenticate(self, request: web.Request) -> KeyInfo:
        secret = bearer_key(request)
        if secret is None:
            self.failures.failed(request.remote or "unknown")
            raise Refused(
                401,
                "unauthorized",
                "Send `Authorization: Bearer <key>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = await self.keys.authenticate(secret)
        if key is None:
            self.failures.failed(request.remote or "unknown")
            raise Refused(
                401,
                "unauthorized",
                "That key is not valid or was revoked.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        self.failures.succeeded(secret)
        return key

    async def _rate_limit(self, key: KeyInfo) -> None:
        # Keys are counted in the quota table under negative subject ids, which no Discord user can have.
        result = await self.rate.take(-key.id, RATE_FEATURE, {Window.MINUTE: self.rate_per_minute})
        if isinstance(result, Denial):
            retry_after = max(1, math.ceil(result.resets_at - self.rate.clock()))
            raise Refused(
                429,
                "rate_limited",
                f"This key may post {self.rate_per_minute} messages a minute; retry in {retry_after} s.",
                extra={"retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )

    @staticmethod
    async def _read_body(request: web.Request) -> str:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise Refused(413, "payload_too_large", f"The body may be at most {MAX_BODY_BYTES} bytes.")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(
                413, "payload_too_large", f"The body may be at most {MAX_BODY_BYTES} bytes."
            ) from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "invalid_json", "The body is not UTF-8 JSON.") from None

    async def _audit(
        self,
        request: web.Request,
        key: KeyInfo | None,
        status: int,
        detail: str,
    ) -> None:
        try:
            await self.audit.record(
                source="http",
                status=status,
                detail=detail,
                api_key_id=key.id if key else None,
                guild_id=key.guild_id if key else None,
                remote=request.remote,
            )
        except Exception:
            log.exception("Could not write the send-data audit row (status %s)", status)

    # --- GET /healthz --------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        gateway = self.bot.is_ready() and not self.bot.is_closed()
        gateway = gateway and all(not shard.is_closed() for shard in self.bot.shards.values())
        try:
            async with asyncio.timeout(HEALTH_DB_TIMEOUT):
                database_ms: float | None = await ping_database(self.bot.db_engine)
        except Exception:
            database_ms = None
        healthy = gateway and database_ms is not None
        body = {
            "status": "ok" if healthy else "unhealthy",
            "gateway": gateway,
            "database": database_ms is not None,
            "database_ms": round(database_ms, 1) if database_ms is not None else None,
            "guilds": len(self.bot.guilds),
        }
        return web.json_response(body, status=200 if healthy else 503)
