"""Provider HTTP transport: one request or one stream, body caps while reading, timeouts, failure classes."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.providers import parsing
from bot.providers.config import ProviderConfig
from bot.providers.parsing import ShapeError
from bot.providers.profiles import Endpoint, Profile
from bot.providers.redact import safe_url
from bot.providers.streaming import StreamProtocolError
from bot.providers.types import Capability

log = logging.getLogger("bot.providers.client")

USER_AGENT = "Concord/0.1 (Discord bot; +https://github.com/concord-bot)"
"""The one User-Agent every HTTP request of the bot carries."""

MAX_COOLDOWN = 30.0
"""No provider rests longer than this, whatever it asks for (Retry-After: inf included)."""


def new_session(*, limit: int = 100, limit_per_host: int = 8) -> aiohttp.ClientSession:
    """The one session a process should share, with a per-host connection limit."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


class Failure(Exception):
    """One failed try, already classified."""

    def __init__(
        self,
        status: int | None,
        reason: str,
        *,
        retryable: bool,
        counts: bool = True,
        retry_after: float | None = None,
        unknown_outcome: bool = False,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.counts = counts
        self.retry_after = retry_after
        self.unknown_outcome = unknown_outcome


@dataclass(slots=True)
class Provider:
    """One configured gateway as the transport sees it: where to send and with which headers."""

    config: ProviderConfig
    profile: Profile
    semaphore: asyncio.Semaphore

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.profile.capabilities

    def url(self, endpoint: Endpoint, **path_args: str) -> str:
        path = endpoint.path.format(**path_args)
        prefix = self.config.path_prefix if self.config.path_prefix is not None else self.profile.prefix
        base = self.config.base_url
        if endpoint.bare:
            # Root-level paths: drop the prefix if base_url already carries it.
            if prefix and base.endswith(prefix):
                base = base[: -len(prefix)]
            return base + path
        if prefix and base.endswith(prefix):
            prefix = ""
        return base + prefix + path

    def headers(self, *, with_key: bool = True) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if with_key and self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.reveal()}"
        return headers


@dataclass(frozen=True, slots=True)
class Body:
    status: int
    content_type: str
    data: bytes

    def json(self) -> Any:
        return parsing.decode_json(self.data, self.content_type)


HOLD_MARGIN = 0.01
"""A stream is read this long before its consumer next uses it, and never held for less."""


class _Expired(Exception):
    """Raised inside a stalled stream read by its watchdog."""


class StreamReader:
    """Reads one streamed body under its first-byte, idle and total deadlines and its size cap.

    One timer watches the whole stream: it is re-armed only when it fires, not on every read,
    so a read costs no timer allocation. A read that outlives a deadline fails with `Failure`.
    """

    __slots__ = (
        "_cap",
        "_config",
        "_content",
        "_expired",
        "_first",
        "_first_at",
        "_handle",
        "_idle",
        "_interval",
        "_loop",
        "_quiet_for",
        "_received",
        "_resume",
        "_total_at",
        "_transport",
        "_waiting_since",
        "content_type",
    )

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        config: ProviderConfig,
        started: float,
        quiet_for: Callable[[], float] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._quiet_for = quiet_for
        self._content = response.content
        self._config = config
        self._interval = config.stream_read_interval
        connection = response.connection
        self._transport = connection.transport if connection is not None and self._interval > 0 else None
        self._resume: asyncio.TimerHandle | None = None
        self.content_type = response.headers.get("Content-Type", "")
        self._cap = config.max_json_bytes
        self._idle = config.idle_timeout
        self._first_at = started + config.first_byte_timeout
        self._total_at = started + config.stream_timeout
        self._first = True
        self._received = 0
        self._waiting_since: float | None = None
        self._expired: str | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            min(self._first_at, self._total_at), self._watch
        )

    def _watch(self) -> None:
        now = self._loop.time()
        config = self._config
        expired: str | None = None
        if now >= self._total_at:
            expired = f"ran past the {config.stream_timeout:g} s stream limit"
        elif self._first and now >= self._first_at:
            expired = f"no data within {config.first_byte_timeout:g} s"
        elif not self._first and self._waiting_since is not None and now >= self._waiting_since + self._idle:
            expired = f"stalled for {config.idle_timeout:g} s"
        if expired is not None:
            self._handle = None
            self._expired = expired
            if self._waiting_since is not None:
                self._content.set_exception(_Expired())
            return
        if self._first:
            when = self._first_at
        elif self._waiting_since is not None:
            when = self._waiting_since + self._idle
        else:
            when = now + self._idle
        self._handle = self._loop.call_at(min(when, self._total_at), self._watch)

    async def read(self) -> bytes:
        """The next bytes, or b"" at the end of the body."""
        if self._expired is not None:
            raise Failure(None, f"the stream {self._expired}", retryable=True)
        self._waiting_since = self._loop.time()
        try:
            data = await self._content.readany()
        except _Expired:
            raise Failure(None, f"the stream {self._expired}", retryable=True) from None
        finally:
            self._waiting_since = None
        if data:
            self._first = False
            self._received += len(data)
            if self._received > self._cap:
                raise Failure(None, "the stream exceeded the size limit", retryable=False)
            self._hold()
        return data

    def _hold(self) -> None:
        """Leave the socket unread for the read interval, or less when the consumer will use new data
        sooner (`quiet_for`): what arrives meanwhile is read in one go."""
        transport = self._transport
        if transport is None or self._resume is not None or self._content.is_eof():
            return
        hold = self._interval
        if self._quiet_for is not None:
            hold = min(hold, self._quiet_for() - HOLD_MARGIN)
        if hold < HOLD_MARGIN:
            return  # the consumer wants the next data as it comes
        transport.pause_reading()
        self._resume = self._loop.call_later(hold, self._release)

    def _release(self) -> None:
        self._resume = None
        if self._transport is not None and not self._transport.is_reading():
            self._transport.resume_reading()

    async def read_all(self, limit: int) -> bytes:
        """The rest of the body (a gateway that answered a stream request in one piece)."""
        chunks: list[bytes] = []
        size = 0
        while data := await self.read():
            size += len(data)
            if size > limit:
                raise Failure(None, f"the response exceeded the {limit}-byte limit", retryable=False)
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._resume is not None:
            self._resume.cancel()
            self._release()


class Transport:
    """Sends one request, or opens one stream, to one provider. The session is the caller's."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(
        self,
        p: Provider,
        capability: Capability,
        *,
        limit: int,
        budget: float,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        path_args: Mapping[str, str] | None = None,
        with_key: bool = True,
    ) -> Body:
        endpoint = p.profile.endpoint(capability)
        url = p.url(endpoint, **(path_args or {}))
        timeout = aiohttp.ClientTimeout(
            total=max(0.001, min(p.config.timeout, budget)), sock_connect=p.config.connect_timeout
        )
        if log.isEnabledFor(logging.DEBUG):
            shown = url + "?" + urlencode(params) if params else url
            log.debug("provider %s: %s %s", p.name, endpoint.method, safe_url(shown))
        async with (
            p.semaphore,
            self._session.request(
                endpoint.method,
                url,
                params=params,
                json=json,
                headers=p.headers(with_key=with_key),
                timeout=timeout,
                allow_redirects=False,
            ) as response,
        ):
            data = await read_limited(response, limit)
            if not 200 <= response.status < 300:
                raise status_failure(response.status, response.headers, data)
            return Body(response.status, response.headers.get("Content-Type", ""), data)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        p: Provider,
        capability: Capability,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        quiet_for: Callable[[], float] | None = None,
    ) -> AsyncIterator[StreamReader]:
        """Open a streamed response; the reader enforces the first-byte, idle and total deadlines."""
        endpoint = p.profile.endpoint(capability)
        url = p.url(endpoint)
        started = asyncio.get_running_loop().time()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=p.config.connect_timeout)
        async with p.semaphore:
            try:
                async with asyncio.timeout(p.config.first_byte_timeout):
                    response = await self._session.request(
                        endpoint.method,
                        url,
                        params=params,
                        json=json,
                        headers=p.headers(),
                        timeout=timeout,
                        allow_redirects=False,
                    )
            except TimeoutError:
                raise Failure(
                    None,
                    f"no first byte within {p.config.first_byte_timeout:g} s",
                    retryable=True,
                    unknown_outcome=True,
                ) from None
            reader: StreamReader | None = None
            try:
                if not 200 <= response.status < 300:
                    raise status_failure(
                        response.status, response.headers, await read_limited(response, 65536)
                    )
                reader = StreamReader(response, p.config, started, quiet_for)
                yield reader
            finally:
                if reader is not None:
                    reader.close()
                response.close()


# --- reading and classifying ----------------------------------------------------------------------


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` bytes."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise Failure(
            response.status,
            f"the response was {declared} bytes, over the {limit}-byte limit",
            retryable=False,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise Failure(response.status, f"the response exceeded the {limit}-byte limit", retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), at most MAX_COOLDOWN."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(MAX_COOLDOWN, max(0.0, seconds))


def status_failure(status: int, headers: Mapping[str, str], body: bytes) -> Failure:
    # `error_detail` redacts before it shortens, so a key cut in half never reaches a log.
    detail = parsing.short(body.decode("utf-8", errors="replace")) if body else "no details"
    if status == 429:
        wait_s = retry_after(headers)
        wait = f"; retry after {wait_s:g} s" if wait_s is not None else ""
        return Failure(status, f"rate limited{wait}", retryable=True, retry_after=wait_s)
    if status == 408 or status >= 500:
        return Failure(status, f"server error: {detail}", retryable=True)
    if status in (401, 403):
        return Failure(status, f"the API key was refused: {detail}", retryable=False)
    if status == 404:
        return Failure(status, f"not found: {detail}", retryable=False, counts=False)
    if 300 <= status < 400:
        return Failure(status, "redirected (check base_url)", retryable=False)
    return Failure(status, f"request refused: {detail}", retryable=False, counts=False)


def classify(exc: BaseException) -> Failure:
    """Transport and shape errors as classified failures."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ShapeError | StreamProtocolError):
        return Failure(None, str(exc), retryable=True)
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        # The request never left: safe to retry even for job-creating calls.
        return Failure(None, f"could not connect ({type(exc).__name__})", retryable=True)
    if isinstance(exc, TimeoutError):
        return Failure(None, "timed out waiting for the answer", retryable=True, unknown_outcome=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Failure(None, "the response was cut off", retryable=True, unknown_outcome=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return Failure(
            None, f"the connection dropped ({type(exc).__name__})", retryable=True, unknown_outcome=True
        )
    if isinstance(exc, aiohttp.ClientError):
        return Failure(
            None, f"HTTP client error ({type(exc).__name__})", retryable=True, unknown_outcome=True
        )
    log.exception("unexpected error talking to a provider")
    return Failure(None, f"unexpected error ({type(exc).__name__})", retryable=False)
