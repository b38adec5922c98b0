"""The AI gateway emulator: one aiohttp server per profile, speaking that seed's dialect, scriptable."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.emulators.gateway import catalog, media
from tests.emulators.gateway.faults import (
    HTML_ERROR_PAGE,
    BadBase64,
    BadSseLine,
    Disconnect,
    EmptyAudio,
    Fault,
    Hang,
    HtmlOk,
    Oversized,
    RateLimited,
    ServerError,
    SlowFirstByte,
    Status,
    StreamCut,
    StreamEndsEarly,
    StreamStall,
    WrongShape,
)

PROFILES = ("digicord", "airforce", "anyai", "purlabs", "openai")
_PREFIXES = {
    "digicord": ["/api/v1"],
    "airforce": ["/v1", ""],
    "anyai": ["/v1", ""],
    "purlabs": [""],
    "openai": ["/v1"],
}
_BINARY_ROUTES = {
    "imagine": "image/png",
    "imagine2": "image/png",
    "audio": "audio/mpeg",
    "media": "image/png",
}
_AIRFORCE_SIZES = {"1:1", "16:9", "9:16", "21:9", "9:21", "1:2", "2:1"}
_ANYAI_IMAGINE = {"sdxl", "pluto", "dall-e-2", "dall-e-3"}
ROUTE = web.RequestKey("route", str)
BODY = web.RequestKey("json", Any)
FAULT = web.RequestKey("fault", Any)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    time: float = field(default_factory=time.monotonic)  # when the request arrived (monotonic clock)


@dataclass
class SunoClipState:
    polls: int = 0
    prompt: str = ""


@dataclass
class GatewayEmulator:
    """Start with `await emu.start()`; point a provider at `emu.base_url`; script, then assert on
    `emu.requests`. One instance speaks one profile."""

    profile: str
    api_key: str | None = None
    reply: str = ""
    stream_chunks: list[str] | None = None
    vision_reply: str = "A blue square on a white background."
    ask_chunks: list[tuple[str, str]] = field(
        default_factory=lambda: [
            ("ChatGPT is a chatbot ", "https://en.wikipedia.org/wiki/ChatGPT"),
            ("made by OpenAI.", "https://openai.com/chatgpt"),
        ]
    )
    ask_chunk_delay: float = 0.0
    """Seconds between two /ask lines (to watch a reply grow)."""
    ask_split_lines: bool = False
    """Write each /ask line in two pieces, cut mid-JSON (a line must be rebuilt across reads)."""
    suno_polls_before_finished: int = 2
    suno_clips_per_job: int = 2
    suno_media_base: str | None = None
    """Where finished clips' audio/image/video URLs point (default: this emulator's /media)."""
    chat_script: Callable[[dict[str, Any]], tuple[str, float]] | None = None
    """Per request: (reply text, seconds before the first streamed token), chosen from the request body."""
    chunk_interval: float = 0.0
    """Seconds between streamed chunks (a model's token rate)."""
    streamed: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time, text) of every streamed chunk, in the order written."""
    purlabs_records: bool = True
    requests: list[RecordedRequest] = field(default_factory=list, repr=False)
    sent_messages: list[dict[str, Any]] = field(default_factory=list)
    suno_clips: dict[str, SunoClipState] = field(default_factory=dict)
    png: bytes = field(default_factory=media.png, repr=False)
    mp3: bytes = field(default_factory=media.mp3, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}")
        self.reply = self.reply or f"Hello from {self.profile}."
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stalled: list[asyncio.Event] = []
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> GatewayEmulator:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.01, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        server = self._site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for event in self._stalled:
            event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GatewayEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The server root."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a provider's `base_url` should be: the root, or root + /v1 for the openai profile
        (OpenAI-compatible servers are configured with the /v1 in their base URL)."""
        return self.url + "/v1" if self.profile == "openai" else self.url

    # --- scripting -----------------------------------------------------------------------------------

    def inject(self, route: str, *faults: Fault, times: int = 1) -> None:
        """Queue `faults` (each `times` times) for the next requests to `route` ("*" for any route)."""
        for fault in faults:
            self._faults[route].extend([fault] * times)

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests_for(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def _take(self, route: str) -> Fault | None:
        for key in (route, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        return None

    # --- routes --------------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        table: list[tuple[str, str, str, Handler, bool]] = []  # route, method, path, handler, bare
        p = self.profile
        chat_path = "/discord/chat/completions" if p == "purlabs" else "/chat/completions"
        table.append(("chat", "POST", chat_path, self._chat, p == "purlabs"))
        if p != "purlabs":
            table.append(("models", "GET", "/models", self._models, False))
        if p == "digicord":
            table += [
                ("vision-models", "GET", "/vision-models", self._models, False),
                ("flux-models", "GET", "/images/flux/models", self._models, False),
                ("flux", "POST", "/images/flux/generations", self._flux, False),
                ("send-data", "POST", "/send-data", self._send_data, False),
            ]
        if p in ("airforce", "anyai"):
            table += [
                ("imagine", "GET", "/imagine", self._imagine, False),
                ("ask", "GET", "/ask", self._ask, False),
                ("vision", "GET", "/images/vision", self._vision, False),
                ("check", "GET", "/check", self._check, True),
            ]
        if p == "airforce":
            table += [
                ("imagine2", "GET", "/imagine2", self._imagine, False),
                ("imagine-models", "GET", "/imagine/models", self._models, False),
                ("suno", "POST", "/suno", self._suno_create, False),
                ("suno-status", "GET", "/suno/{clip_id}", self._suno_status, False),
                ("audio", "GET", "/get-audio", self._audio, True),
            ]
        if p in ("anyai", "openai"):
            table.append(("images", "POST", "/images/generations", self._generations, False))
        table.append(("media", "GET", "/media/{name}", self._media, True))
        for route, method, path, handler, bare in table:
            for i, prefix in enumerate([""] if bare else _PREFIXES[p]):
                app.router.add_route(method, prefix + path, handler, name=f"{route}:p{i}")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        name = resource.name if resource is not None and resource.name else "unknown:"
        route = name.split(":")[0]
        arrived = time.monotonic()
        body = await request.read()
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        self.requests.append(
            RecordedRequest(
                route,
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                payload,
                body,
                arrived,
            )
        )
        request[ROUTE] = route
        request[BODY] = payload
        if route == "unknown":
            return await handler(request)
        authorised = request.headers.get("Authorization") == f"Bearer {self.api_key}"
        if self.api_key is not None and route not in ("check", "media") and not authorised:
            return web.json_response({"error": {"message": "Invalid API key"}}, status=401)
        fault = self._take(route)
        request[FAULT] = fault
        if isinstance(fault, SlowFirstByte):
            await asyncio.sleep(fault.delay)
        elif isinstance(fault, Hang):
            await self._stall()
            raise web.HTTPServiceUnavailable()
        elif isinstance(fault, Disconnect):
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)
        elif isinstance(fault, RateLimited):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.json_response(
                {"error": {"message": "Rate limit exceeded"}}, status=429, headers=headers
            )
        elif isinstance(fault, ServerError):
            return web.Response(status=fault.status, text=HTML_ERROR_PAGE, content_type="text/html")
        elif isinstance(fault, HtmlOk):
            return web.Response(status=200, text=HTML_ERROR_PAGE, content_type="text/html")
        elif isinstance(fault, Status):
            if isinstance(fault.body, str):
                return web.Response(status=fault.status, text=fault.body, headers=fault.headers)
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        elif isinstance(fault, WrongShape):
            return web.json_response(fault.body)
        elif isinstance(fault, Oversized):
            return await self._oversized(request, route, fault)
        return await handler(request)

    async def _stall(self) -> None:
        event = asyncio.Event()
        self._stalled.append(event)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 60)

    async def _oversized(self, request: web.Request, route: str, fault: Oversized) -> web.StreamResponse:
        ctype = _BINARY_ROUTES.get(route, "application/json")
        head = (
            self.png[:8] if ctype == "image/png" else self.mp3[:4] if ctype == "audio/mpeg" else b'{"pad":"'
        )
        if not fault.chunked:
            return web.Response(body=head + b"0" * (fault.size - len(head)), content_type=ctype)
        response = web.StreamResponse(headers={"Content-Type": ctype})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(head)
        sent = len(head)
        piece = b"0" * 65536
        try:
            while sent < fault.size:
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response

    # --- chat ----------------------------------------------------------------------------------------

    def _reply_for(self, body: dict[str, Any]) -> str:
        for message in body.get("messages", []):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list) and any(
                isinstance(part, dict) and part.get("type") == "image_url" for part in content
            ):
                return self.vision_reply
        return self.reply

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return web.json_response({"error": {"message": "messages is required"}}, status=400)
        if self.profile == "openai" and not isinstance(body.get("model"), str):
            # What FastAPI-based OpenAI-compatible servers answer for a body without `model`.
            detail = {"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": body}
            return web.json_response({"detail": [detail]}, status=422)
        if self.profile == "purlabs" and not isinstance(body.get("model"), str):
            # Its request interface declares `model: string` (not optional), though its example leaves it
            # out: stricter than the example, as the interface says.
            return web.json_response({"error": {"message": "model is required"}}, status=400)
        model = body.get("model") or {"digicord": "google/gemini-flash-1.5", "purlabs": "clyde"}.get(
            self.profile, "gpt-4o-mini"
        )
        text = self._reply_for(body)
        first_token_delay = 0.0
        if self.chat_script is not None:
            text, first_token_delay = self.chat_script(body)
        if body.get("stream"):
            return await self._chat_stream(request, model, text, first_token_delay)
        n = body.get("n", 1) if isinstance(body.get("n"), int) else 1
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.profile == "digicord":
            message["refusal"] = ""
        response: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": "stop"} for i in range(n)
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        }
        if self.profile == "digicord":
            response["provider"] = "Fireworks"
        if self.profile == "purlabs":
            response.update(provider="Churchless", overwritten=False, calledFunctions=[])
            if self.purlabs_records:
                response["cache"] = {
                    "status": 500,
                    "error": {
                        "message": "Some of our providers returned with errors. "
                        "Errors are automatically reported to our developers.",
                        "records": [
                            {"provider": "CattoGPT", "response": {"status": 404, "data": HTML_ERROR_PAGE}},
                            {
                                "provider": "Pawan",
                                "response": {"status": 504, "data": "timeout of 60000ms exceeded"},
                            },
                        ],
                    },
                }
        return web.json_response(response)

    async def _chat_stream(
        self, request: web.Request, model: str, text: str, first_token_delay: float = 0.0
    ) -> web.StreamResponse:
        fault = request.get(FAULT)
        chunks = self.stream_chunks if self.stream_chunks is not None else _words(text)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        ident = "chatcmpl-" + uuid.uuid4().hex[:12]

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(event({"role": "assistant", "content": ""}))
        if first_token_delay:
            await asyncio.sleep(first_token_delay)
        for i, piece in enumerate(chunks):
            if await self._stream_fault(request, response, fault, i):
                return response
            if i and self.chunk_interval:
                await asyncio.sleep(self.chunk_interval)
            await response.write(event({"content": piece}))
            self.streamed.append((time.monotonic(), piece))
        if await self._stream_fault(request, response, fault, len(chunks)):
            return response
        await response.write(event({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _stream_fault(
        self, request: web.Request, response: web.StreamResponse, fault: Fault | None, sent: int
    ) -> bool:
        """Apply a stream fault once `sent` chunks went out; True when the stream is over."""
        if isinstance(fault, BadSseLine) and sent == fault.after:
            await response.write(b"data: {this is not json\n\n")
            return False
        if isinstance(fault, StreamCut) and sent == fault.after:
            assert request.transport is not None
            request.transport.close()
            return True
        if isinstance(fault, StreamEndsEarly) and sent == fault.after:
            await response.write_eof()
            return True
        if isinstance(fault, StreamStall) and sent == fault.after:
            await self._stall()
            return True
        return False

    # --- models --------------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        route = request[ROUTE]
        if route == "imagine-models":
            return web.json_response(catalog.AIRFORCE_IMAGINE_MODELS)
        if route == "flux-models":
            # The digicord document lists FLUX models as plain names.
            return web.json_response(catalog.DIGICORD_FLUX_MODELS)
        if route == "vision-models":
            return web.json_response(_model_list([(m, "digicord") for m in catalog.DIGICORD_VISION_MODELS]))
        entries = {
            "anyai": catalog.ANYAI_MODELS,
            "airforce": [(m, "airforce") for m in catalog.AIRFORCE_MODELS],
            "digicord": [(m, "digicord") for m in catalog.DIGICORD_MODELS],
            "openai": [(m, "openai") for m in catalog.OPENAI_MODELS],
        }[self.profile]
        return web.json_response(_model_list(entries))

    # --- images --------------------------------------------------------------------------------------

    async def _imagine(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if not q.get("prompt"):
            return web.json_response({"error": "prompt is required"}, status=400)
        if self.profile == "airforce" and "size" in q and q["size"] not in _AIRFORCE_SIZES:
            return web.json_response({"error": "invalid size"}, status=400)
        if self.profile == "anyai" and "model" in q and q["model"] not in _ANYAI_IMAGINE:
            return web.json_response({"error": "invalid model"}, status=400)
        return web.Response(body=self.png, content_type="image/png")

    def _image_entries(self, request: web.Request, n: int, response_format: str) -> list[dict[str, Any]]:
        if isinstance(request.get(FAULT), BadBase64):
            return [{"b64_json": "!!not*base64!!"} for _ in range(n)]
        if response_format == "b64_json":
            return [{"b64_json": base64.b64encode(self.png).decode()} for _ in range(n)]
        return [{"url": f"{self.url}/media/{uuid.uuid4().hex}.png"} for _ in range(n)]

    async def _flux(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        if not isinstance(body, dict) or not body.get("prompt"):
            return web.json_response({"error": "prompt is required"}, status=400)
        n = body.get("n", 1)
        fmt = body.get("response_format", "b64_json")
        return web.json_response({"created": int(time.time()), "data": self._image_entries(request, n, fmt)})

    async def _generations(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        if not isinstance(body, dict) or not body.get("prompt"):
            return web.json_response({"error": {"message": "prompt is required"}}, status=400)
        n = body.get("n", 1)
        fmt = body.get("response_format", "url")
        return web.json_response({"created": int(time.time()), "data": self._image_entries(request, n, fmt)})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name.endswith(".mp3"):
            return web.Response(body=self.mp3, content_type="audio/mpeg")
        return web.Response(body=self.png, content_type="image/png")

    # --- vision, ask, songs, speech, check ---------------------------------------------------------------

    async def _vision(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("url"):
            return web.json_response({"error": "url is required"}, status=400)
        if self.profile == "anyai":
            return web.json_response(self.vision_reply)
        return web.Response(text=self.vision_reply, content_type="text/plain")

    async def _ask(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("prompt"):
            return web.json_response({"error": "prompt is required"}, status=400)
        fault = request.get(FAULT)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, (message, url) in enumerate(self.ask_chunks):
            if isinstance(fault, BadSseLine) and i == fault.after:
                await response.write(b"{not json}\n")
            elif await self._stream_fault(request, response, fault, i):
                return response
            if i and self.ask_chunk_delay:
                await asyncio.sleep(self.ask_chunk_delay)
            line = json.dumps({"message": message, "url": url}).encode() + b"\n"
            if self.ask_split_lines:
                await response.write(line[: len(line) // 2])
                await asyncio.sleep(0.02)
                await response.write(line[len(line) // 2 :])
            else:
                await response.write(line)
        if await self._stream_fault(request, response, fault, len(self.ask_chunks)):
            return response
        await response.write_eof()
        return response

    async def _suno_create(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        problem = _suno_problem(body)
        if problem is not None:
            return web.json_response({"status": "error", "error": problem}, status=400)
        clips = [str(uuid.uuid4()) for _ in range(self.suno_clips_per_job)]
        for clip in clips:
            self.suno_clips[clip] = SunoClipState(prompt=body["prompt"])
        return web.json_response({"status": "success", "clips": clips})

    async def _suno_status(self, request: web.Request) -> web.StreamResponse:
        clip_id = request.match_info["clip_id"]
        state = self.suno_clips.get(clip_id)
        if state is None:
            return web.json_response({"error": "clip not found"}, status=404)
        state.polls += 1
        media = self.suno_media_base or f"{self.url}/media"
        image = f"{media}/{clip_id}.png"
        if state.polls <= self.suno_polls_before_finished:
            return web.json_response(
                {"status": "generating", "image_url": image, "audio_url": "", "video_url": ""}
            )
        return web.json_response(
            {
                "status": "finished",
                "image_url": image,
                "audio_url": f"{media}/{clip_id}.mp3",
                "video_url": f"{media}/{clip_id}.mp4",
            }
        )

    async def _audio(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("text"):
            return web.json_response({"error": "text is required"}, status=400)
        if request.query.get("voice", "alex") not in ("alex", "sophia"):
            return web.json_response({"error": "unknown voice"}, status=400)
        if isinstance(request.get(FAULT), EmptyAudio):
            return web.Response(body=b"", content_type="audio/mpeg")
        return web.Response(body=self.mp3, content_type="audio/mpeg")

    async def _check(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "")
        if not key or (self.api_key is not None and key != self.api_key):
            # Echoes the key back, as careless gateways do: the client must redact it.
            return web.json_response({"error": f"invalid key {key}"}, status=401)
        return web.json_response(
            {
                "key": key,
                "plan": "premium",
                "max_characters": 5000,
                "usage": {"llms": {"minute": 1, "day": 12}, "imagine": {"day": 3}},
                "limits": {"llms": {"minute": 30, "day": 5000}, "imagine": {"day": 20}},
            }
        )

    async def _send_data(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        if not isinstance(body, dict) or not str(body.get("channelId", "")).isdigit():
            return web.json_response({"success": False, "error": "channelId is required"}, status=400)
        self.sent_messages.append(body)
        return web.json_response(
            {"success": True, "messageId": str(1_300_000_000_000_000_000 + len(self.sent_messages))}
        )


_SUNO_MODELS = ("chirp-v2-xxl-alpha", "chirp-v3-5", "chirp-v3-0")


def _suno_problem(body: Any) -> str | None:
    """What the seed's documented limits say is wrong with a `POST /suno` body, if anything."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "prompt is required"
    model = body.get("model", "chirp-v3-5")
    if model not in _SUNO_MODELS:
        return "invalid model"
    for flag in ("instrumental", "custom"):
        if flag in body and body[flag] not in ("true", "false"):
            return f"{flag} must be 'true' or 'false'"
    custom = body.get("custom") == "true"
    limit = (3000 if model == "chirp-v3-5" else 1250) if custom else 200
    if len(body["prompt"]) > limit:
        return "prompt too long"
    style = body.get("style")
    if style is not None and (not isinstance(style, str) or not 1 <= len(style) <= 120):
        return "style must be between 1 and 120 characters"
    if custom and style is None:
        return "style is required for custom generation"
    return None


def _words(text: str) -> list[str]:
    """Split into word chunks that join back to `text` exactly."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [p for p in pieces if p]


def _model_list(entries: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": mid, "object": "model", "created": 1686935002, "owned_by": owner} for mid, owner in entries
        ],
    }
