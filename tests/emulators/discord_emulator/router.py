"""The REST front door: parses requests, checks the token, records, injects faults, rate-limits, routes."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from .errors import ApiError, not_found, too_large, unauthorized
from .ratelimits import rate_limited_body

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

log = logging.getLogger(__name__)

Json = dict[str, Any]
API_PREFIX = "/api/v10"
# Discord answers through Google's front end; discord.py treats a 429 without `Via` as a Cloudflare ban.
BASE_HEADERS = {"Via": "1.1 google"}


@dataclass(frozen=True)
class UploadedFile:
    """One `files[n]` part of a multipart request."""

    field: str
    filename: str
    data: bytes
    content_type: str


@dataclass
class RecordedRequest:
    """One REST request as the emulator saw it, with what it answered."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    time: float
    status: int = 0
    response: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def file_names(self) -> list[str]:
        return [f.filename for f in self.files]


@dataclass
class ApiRequest:
    """What a route handler gets: the parsed request and its path parameters."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]

    def id(self, name: str) -> int:
        return int(self.params[name])

    @property
    def body(self) -> Json:
        return self.json if isinstance(self.json, dict) else {}


@dataclass
class Reply:
    status: int = 200
    body: Any = None


Handler = Callable[["DiscordEmulator", ApiRequest], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    bucket: str | None
    major: str | None
    auth: bool


class Router:
    """Route table plus the cross-cutting behaviour every Discord endpoint shares."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        bucket: str | None = "default",
        major: str | None = None,
        auth: bool = True,
    ) -> None:
        """Register `path` (`{name}` placeholders); `major` names the parameter that splits the bucket."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
        self.routes.append(Route(method, re.compile(f"^{regex}$"), handler, bucket, major, auth))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        path_matched = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            path_matched = True
            if route.method == method:
                return route, found.groupdict()
        if path_matched:
            raise ApiError(405, 0, "405: Method Not Allowed")
        return None

    async def _parse(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue
                data = await part.read(decode=False)
                if part.name == "payload_json":
                    payload = json.loads(data)
                elif part.filename is not None:
                    files.append(
                        UploadedFile(
                            part.name or "",
                            part.filename,
                            bytes(data),
                            part.headers.get("Content-Type", "application/octet-stream"),
                        )
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    @staticmethod
    def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        all_headers = {**BASE_HEADERS, **(headers or {})}
        if status == 204 or body is None:
            return web.Response(status=status, headers=all_headers)
        # Exactly "application/json": discord.py only decodes JSON when the header has no charset.
        all_headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        path = request.path[len(API_PREFIX) :] or "/"
        method = request.method
        record = RecordedRequest(method, path, dict(request.query), None, [], time.monotonic())
        emu.requests.append(record)
        rl_headers: dict[str, str] = {}
        try:
            record.json, record.files = await self._parse(request)
            matched = self.match(method, path)
            if matched is None:
                raise not_found()
            route, params = matched
            if route.auth and request.headers.get("Authorization") != f"Bot {emu.token}":
                raise unauthorized()

            delay = emu.faults.take_delay(method, path)
            if delay:
                await asyncio.sleep(delay)

            fault = emu.faults.take_fault(method, path)
            if fault is not None:
                headers = dict(fault.headers)
                if fault.status == 429:
                    headers.setdefault("Retry-After", f"{fault.retry_after:.3f}")
                    emu.rate_limited.append(record)
                return self._finish(record, fault.status, fault.body, headers)

            if route.bucket is not None:
                major = params.get(route.major, "") if route.major else path
                allowed, rl_headers, retry_after = emu.ratelimiter.hit(route.bucket, major)
                if not allowed:
                    emu.rate_limited.append(record)
                    headers = {**rl_headers, "Retry-After": f"{retry_after:.3f}", "X-RateLimit-Scope": "user"}
                    return self._finish(record, 429, rate_limited_body(retry_after), headers)

            api_request = ApiRequest(method, path, params, dict(request.query), record.json, record.files)
            reply = await route.handler(emu, api_request)
            return self._finish(record, reply.status, reply.body, rl_headers)
        except ApiError as exc:
            return self._finish(record, exc.status, exc.body(), rl_headers)
        except web.HTTPRequestEntityTooLarge:
            return self._finish(record, 413, too_large().body(), rl_headers)
        except Exception as exc:
            # A bug in the emulator, not a Discord answer: keep it visible to the test.
            log.exception("emulator route %s %s failed", method, path)
            emu.internal_errors.append(exc)
            return self._finish(record, 500, {"message": "500: Internal Server Error", "code": 0}, rl_headers)

    def _finish(
        self, record: RecordedRequest, status: int, body: Any, headers: dict[str, str]
    ) -> web.Response:
        record.status = status
        record.response = body
        record.headers = headers
        return self.respond(status, body, headers)
