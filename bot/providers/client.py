"""The typed provider API: every AI capability as a method, routed by capability and model."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random as _random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from bot.providers import health, parsing, profiles
from bot.providers.config import ProviderConfig
from bot.providers.errors import (
    AttemptRecord,
    CapabilityUnavailable,
    ParameterError,
    ProviderUnavailable,
)
from bot.providers.failover import Failover, RetryPolicy, Route
from bot.providers.models import DEFAULT_CLOSED_SOURCE_PATTERNS, is_closed_source
from bot.providers.parsing import ShapeError
from bot.providers.profiles import MODEL_LIST_CAPABILITY, PROFILES
from bot.providers.redact import REDACTOR
from bot.providers.streaming import JsonLinesDecoder, SSEDecoder
from bot.providers.transport import Body, Failure, Transport, classify, read_limited
from bot.providers.transport import Provider as _Provider
from bot.providers.types import (
    AskChunk,
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FluxRequest,
    ImageBytes,
    ImageGenerationRequest,
    ImageSet,
    ImagineRequest,
    KeyUsage,
    ModelInfo,
    ModelKind,
    ProviderHealth,
    SendDataRequest,
    SendDataResult,
    SpeechAudio,
    SpeechRequest,
    StreamEnd,
    SunoClip,
    SunoJob,
    SunoRequest,
    VisionRequest,
    VisionResult,
)

log = logging.getLogger(__name__)

C = Capability
T = TypeVar("T")
P = TypeVar("P")
Item = TypeVar("Item", ChatChunk, AskChunk)

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


@dataclass(frozen=True, slots=True)
class _Done:
    finish_reason: str | None = None


class ProviderClient:
    """Every AI capability, spoken in each configured gateway's dialect, with failover.

    The aiohttp session is the caller's: this client never closes it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        providers: Sequence[ProviderConfig],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._session = session
        self._clock = clock
        self.policy = policy or RetryPolicy()
        ordered = sorted(enumerate(providers), key=lambda pair: (pair[1].priority, pair[0]))
        self._providers = [
            _Provider(config=c, profile=PROFILES[c.profile], semaphore=asyncio.Semaphore(c.max_concurrency))
            for _, c in ordered
        ]
        self._routes = {p.name: Route(p) for p in self._providers}
        for c in providers:
            if c.api_key is not None:
                REDACTOR.add(c.api_key.reveal())
        self._redactor = REDACTOR
        self._transport = Transport(session)
        self._engine = Failover(self.policy, clock=clock, sleep=sleep, random=random, redact=REDACTOR)
        self._model_cache: dict[tuple[str, ModelKind], tuple[float, list[ModelInfo]]] = {}
        self._defaults: dict[str, str] = {}
        for p in self._providers:
            static_default = self.default_model(p.name)
            if static_default is not None:
                self._defaults[p.name] = static_default
        self._closed_patterns = (
            *DEFAULT_CLOSED_SOURCE_PATTERNS,
            *(pattern for c in providers for pattern in c.closed_source),
        )
        self._closed_answers: dict[str, bool] = {}

    # --- introspection ------------------------------------------------------------------------------

    @property
    def providers(self) -> tuple[ProviderConfig, ...]:
        """The configured providers, in the order they are tried."""
        return tuple(p.config for p in self._providers)

    def capabilities(self, provider: str | None = None) -> frozenset[Capability]:
        """What `provider` (or, without a name, any configured provider) can do."""
        chosen = [p for p in self._providers if provider is None or p.name == provider]
        if provider is not None and not chosen:
            raise ParameterError("provider", f"names no configured provider ({provider!r})")
        return frozenset().union(*(p.capabilities for p in chosen)) if chosen else frozenset()

    def available(self, capability: Capability) -> bool:
        return any(capability in p.capabilities for p in self._providers)

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def is_closed_source(self, model: str) -> bool:
        """Whether `model` counts as closed-source: the built-in patterns plus each provider's
        `closed_source` globs. Asked on every chat turn, so each model's answer is kept."""
        answer = self._closed_answers.get(model)
        if answer is None:
            if len(self._closed_answers) >= 1024:
                self._closed_answers.clear()
            answer = self._closed_answers[model] = is_closed_source(model, self._closed_patterns)
        return answer

    def default_model(self, provider: str, kind: ModelKind = "chat") -> str | None:
        """The model `provider` uses for `kind` when a request names none, as far as it is known
        without asking: `default_model`, the first of `models`, then its gateway's documented default.
        For chat, a default learnt from the provider's `/models` list is also returned."""
        p = next((p for p in self._providers if p.name == provider), None)
        if p is None:
            raise ParameterError("provider", f"names no configured provider ({provider!r})")
        if kind == "chat":
            if p.config.default_model is not None:
                return p.config.default_model
            if p.config.models:
                return p.config.models[0]
            learnt = self._defaults.get(p.name)
            if learnt is not None:
                return learnt
        return profiles.DOCUMENTED_DEFAULTS.get(p.profile.name, {}).get(kind)

    def default_chat_model(self) -> str | None:
        """The model a chat request that names none is sent with on the first provider offering chat:
        what the quota's closed-source check judges such a request by."""
        for p in self._providers:
            if C.CHAT in p.capabilities:
                return self.default_model(p.name, "chat")
        return None

    async def _with_model(self, p: _Provider, body: dict[str, Any]) -> dict[str, Any]:
        """`body` with a model: a provider with no default from config or docs learns one, once, as
        the first model of its `/models` list, when it is first asked to chat without one."""
        if "model" in body or C.MODELS not in p.capabilities:
            return body
        learnt = self._defaults.get(p.name)
        if learnt is None:
            try:
                models = await self._models_of(p, "chat", C.MODELS, False)
            except ProviderUnavailable:
                return body  # the gateway may still pick its own; learnt on a later call
            if not models:
                return body
            learnt = self._defaults[p.name] = models[0].id
        return {**body, "model": learnt}

    # --- chat ---------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        profiles.validate_chat(request)
        plans = self._plan(
            (C.CHAT,),
            request.model,
            lambda p: profiles.chat_body(
                p.profile,
                request,
                stream=False,
                max_message_chars=p.config.max_message_chars,
                default_model=self._defaults.get(p.name),
            ),
        )

        async def call(p: _Provider, body: dict[str, Any], budget: float) -> ChatResponse:
            body = await self._with_model(p, body)
            response = await self._transport.send(
                p, C.CHAT, json=body, limit=p.config.max_json_bytes, budget=budget
            )
            return parsing.parse_chat(response.json(), p.name)

        return await self._failover("chat", plans, call)

    async def chat_stream(
        self, request: ChatRequest, *, quiet_for: Callable[[], float] | None = None
    ) -> AsyncGenerator[ChatChunk | StreamEnd, None]:
        """Text chunks as they arrive, then one StreamEnd. Close the iterator (`aclosing`) if you stop early.

        A stream that breaks before its first chunk fails over; one that breaks later ends with
        `StreamEnd(complete=False)` holding the partial text. `quiet_for`, if given, says how many seconds
        the caller will not use new text (it shows text on a schedule): the stream is then read less
        often, up to each provider's `stream_read_interval`.
        """
        profiles.validate_chat(request)
        plans = self._plan(
            (C.CHAT_STREAM,),
            request.model,
            lambda p: profiles.chat_body(
                p.profile,
                request,
                stream=True,
                max_message_chars=p.config.max_message_chars,
                default_model=self._defaults.get(p.name),
            ),
        )
        once = functools.partial(self._chat_stream_once, quiet_for=quiet_for)
        async for item in self._stream_failover("chat", plans, once, lambda c: c.text):
            yield item

    async def _chat_stream_once(
        self, p: _Provider, body: dict[str, Any], *, quiet_for: Callable[[], float] | None
    ) -> AsyncGenerator[ChatChunk | _Done, None]:
        body = await self._with_model(p, body)
        async with self._transport.stream(p, C.CHAT_STREAM, json=body, quiet_for=quiet_for) as reader:
            ctype = reader.content_type
            if "text/event-stream" not in ctype:
                # A gateway that ignores `stream` and answers in one piece is still an answer.
                raw = await reader.read_all(p.config.max_json_bytes)
                reply = parsing.parse_chat(parsing.decode_json(raw, ctype), p.name)
                if reply.text:
                    yield ChatChunk(reply.text, p.name, 0, reply.choices[0].finish_reason)
                yield _Done(reply.choices[0].finish_reason)
                return
            decoder = SSEDecoder()
            finish: str | None = None
            read = reader.read
            parse_chunk = parsing.parse_chunk
            while True:
                data = await read()
                events = decoder.feed(data) if data else decoder.flush()
                for event in events:
                    if event.is_done:
                        yield _Done(finish)
                        return
                    for index, text, finish_reason in parse_chunk(event.json()):
                        if finish_reason and index == 0:
                            finish = finish_reason
                        if text:
                            yield ChatChunk(text, p.name, index, finish_reason)
                if not data:
                    if finish is not None:
                        # Ended cleanly after a finish_reason but without [DONE]: the answer is whole.
                        yield _Done(finish)
                        return
                    raise Failure(None, "the stream ended before it was finished", retryable=True)

    # --- models -------------------------------------------------------------------------------------

    async def list_models(self, kind: ModelKind = "chat", *, refresh: bool = False) -> list[ModelInfo]:
        """Models of `kind` across providers (declared `models` win over the gateway's list), cached."""
        capability = MODEL_LIST_CAPABILITY.get(kind)
        if capability is None:
            raise ParameterError("kind", f"must be one of {', '.join(MODEL_LIST_CAPABILITY)} (got {kind!r})")
        offering = [
            p for p in self._providers if capability in p.capabilities or (kind == "chat" and p.config.models)
        ]
        if not offering:
            raise CapabilityUnavailable(capability.value)
        results: list[ModelInfo] = []
        attempts: list[AttemptRecord] = []
        answered = False
        for p in offering:
            try:
                models = await self._models_of(p, kind, capability, refresh)
            except ProviderUnavailable as exc:
                attempts.extend(exc.attempts)
                continue
            answered = True
            results.extend(models)
        if not answered:
            raise ProviderUnavailable(capability.value, attempts)
        seen: set[str] = set()
        unique = []
        for model in results:
            if model.id not in seen:
                seen.add(model.id)
                unique.append(model)
        return unique

    async def _models_of(
        self, p: _Provider, kind: ModelKind, capability: Capability, refresh: bool
    ) -> list[ModelInfo]:
        if kind == "chat" and p.config.models:
            return [ModelInfo(m, kind, p.name) for m in p.config.models]
        static = profiles.STATIC_MODELS.get(kind)
        if static is not None:
            return [ModelInfo(m, kind, p.name) for m in static]
        key = (p.name, kind)
        cached = self._model_cache.get(key)
        if cached and not refresh and cached[0] > self._clock():
            return cached[1]

        async def call(p: _Provider, _: None, budget: float) -> list[ModelInfo]:
            response = await self._transport.send(p, capability, limit=p.config.max_json_bytes, budget=budget)
            return parsing.parse_models(response.json(), kind, p.name)

        models = await self._failover(capability.value, [(p, None)], call)
        self._model_cache[key] = (self._clock() + self.policy.models_ttl, models)
        return models

    # --- images -------------------------------------------------------------------------------------

    async def imagine(self, request: ImagineRequest) -> ImageBytes:
        """`GET /imagine` (or `/imagine2` with `fast=True`): PNG bytes."""
        profiles.validate_imagine(request)
        capability = C.IMAGINE2 if request.fast else C.IMAGINE
        plans = self._plan((capability,), None, lambda p: profiles.imagine_query(p.profile, request))

        async def call(p: _Provider, query: dict[str, str], budget: float) -> ImageBytes:
            response = await self._transport.send(
                p, capability, params=query, limit=p.config.max_image_bytes, budget=budget
            )
            _expect_image(response)
            return ImageBytes(
                data=response.data,
                content_type=response.content_type.split(";")[0] or "image/png",
                provider=p.name,
                model=request.model,
            )

        return await self._failover(capability.value, plans, call)

    async def generate_images(self, request: ImageGenerationRequest) -> ImageSet:
        """`POST /images/generations` (dall-e style). Not resent after a timeout: it creates a job."""
        plans = self._plan(
            (C.IMAGE_GENERATIONS,), None, lambda p: profiles.generations_body(p.profile, request)
        )

        call = self._image_set_call(C.IMAGE_GENERATIONS, request.n, request.model)
        return await self._failover("image_generations", plans, call, idempotent=False)

    async def flux(self, request: FluxRequest) -> ImageSet:
        """digicord `POST /images/flux/generations`. Not resent after a timeout: it creates a job."""
        body = profiles.flux_body(request)
        plans = self._plan((C.FLUX,), None, lambda p: body)

        call = self._image_set_call(C.FLUX, request.n, request.model)
        return await self._failover("flux", plans, call, idempotent=False)

    def _image_set_call(
        self, capability: Capability, n: int, model: str | None
    ) -> Callable[[_Provider, dict[str, Any], float], Awaitable[ImageSet]]:
        """One POST answered with `{data: [{url | b64_json}]}`; the body cap allows n base64 images."""

        async def call(p: _Provider, body: dict[str, Any], budget: float) -> ImageSet:
            limit = p.config.max_json_bytes + p.config.max_image_bytes * n * 4 // 3
            response = await self._transport.send(p, capability, json=body, limit=limit, budget=budget)
            return parsing.parse_image_set(response.json(), p.name, model)

        return call

    # --- vision -------------------------------------------------------------------------------------

    async def vision(self, request: VisionRequest) -> VisionResult:
        """Describe an image: chat with an image part (digicord, openai) or `GET /images/vision`."""
        profiles.validate_vision(request)

        def prepare(p: _Provider) -> tuple[Capability, dict[str, Any]]:
            if C.VISION_CHAT in p.capabilities:
                chat = profiles.vision_chat_request(request)
                return C.VISION_CHAT, profiles.chat_body(
                    p.profile,
                    chat,
                    stream=False,
                    max_message_chars=p.config.max_message_chars,
                    default_model=self.default_model(p.name, "vision"),
                )
            return C.VISION_URL, profiles.vision_url_query(request)

        plans = self._plan((C.VISION_CHAT, C.VISION_URL), request.model, prepare)

        async def call(
            p: _Provider, prepared: tuple[Capability, dict[str, Any]], budget: float
        ) -> VisionResult:
            capability, payload = prepared
            if capability is C.VISION_CHAT:
                response = await self._transport.send(
                    p, capability, json=payload, limit=p.config.max_json_bytes, budget=budget
                )
                reply = parsing.parse_chat(response.json(), p.name)
                if not reply.text.strip():
                    raise ShapeError("the description was empty")
                return VisionResult(text=reply.text, provider=p.name, model=reply.model or request.model)
            response = await self._transport.send(
                p, capability, params=payload, limit=p.config.max_json_bytes, budget=budget
            )
            text = parsing.parse_vision_text(response.data, response.content_type)
            return VisionResult(text=text, provider=p.name, model=request.model)

        return await self._failover("vision", plans, call)

    # --- songs, speech, search ------------------------------------------------------------------------

    async def suno_create(self, request: SunoRequest) -> SunoJob:
        """`POST /suno`: clip ids to poll. Not resent after a timeout: it creates a job."""
        body = profiles.suno_body(request)
        plans = self._plan((C.SUNO,), None, lambda p: body)

        async def call(p: _Provider, body: dict[str, Any], budget: float) -> SunoJob:
            response = await self._transport.send(
                p, C.SUNO, json=body, limit=p.config.max_json_bytes, budget=budget
            )
            return parsing.parse_suno_job(response.json(), p.name)

        return await self._failover("suno", plans, call, idempotent=False)

    async def suno_status(self, clip_id: str, *, provider: str) -> SunoClip:
        """`GET /suno/<uuid>` on the provider that created the clip."""
        profiles.check_clip_id(clip_id)
        p = self._named(provider, C.SUNO_STATUS)

        async def call(p: _Provider, _: None, budget: float) -> SunoClip:
            response = await self._transport.send(
                p, C.SUNO_STATUS, path_args={"clip_id": clip_id}, limit=p.config.max_json_bytes, budget=budget
            )
            return parsing.parse_suno_clip(response.json(), clip_id, p.name)

        return await self._failover("suno_status", [(p, None)], call)

    async def speech(self, request: SpeechRequest) -> SpeechAudio:
        """`GET /get-audio?text=&voice=`: MP3 bytes."""
        query = profiles.speech_query(request)
        plans = self._plan((C.SPEECH,), None, lambda p: query)

        async def call(p: _Provider, query: dict[str, str], budget: float) -> SpeechAudio:
            response = await self._transport.send(
                p, C.SPEECH, params=query, limit=p.config.max_audio_bytes, budget=budget
            )
            _expect_mp3(response)
            return SpeechAudio(
                data=response.data,
                content_type=response.content_type.split(";")[0] or "audio/mpeg",
                provider=p.name,
            )

        return await self._failover("speech", plans, call)

    async def ask(self, prompt: str) -> AsyncGenerator[AskChunk | StreamEnd, None]:
        """GlobalAsk: `{message, url}` pieces as they arrive, then one StreamEnd."""
        query = profiles.ask_query(prompt)
        plans = self._plan((C.ASK,), None, lambda p: query)
        async for item in self._stream_failover("ask", plans, self._ask_once, lambda c: c.message):
            yield item

    async def _ask_once(self, p: _Provider, query: dict[str, str]) -> AsyncGenerator[AskChunk | _Done, None]:
        async with self._transport.stream(p, C.ASK, params=query) as reader:
            read = reader.read
            if parsing.looks_like_html(b"", reader.content_type):
                raise ShapeError("answered with an HTML page instead of JSON lines")
            # A malformed line is skipped and counted, not fatal: the lines around it are still good.
            decoder = JsonLinesDecoder(skip_malformed=True)
            shapeless = 0
            while True:
                data = await read()
                for item in decoder.feed(data) if data else decoder.flush():
                    if not isinstance(item, Mapping) or not isinstance(item.get("message"), str):
                        shapeless += 1
                        continue
                    url = item.get("url")
                    yield AskChunk(item["message"], url if isinstance(url, str) and url else None, p.name)
                if not data:
                    if decoder.skipped or shapeless:
                        log.warning(
                            "provider %s: skipped %d malformed GlobalAsk line(s) (%d not JSON, %d without"
                            " a message)",
                            p.name,
                            decoder.skipped + shapeless,
                            decoder.skipped,
                            shapeless,
                        )
                    # JSON lines have no end marker: a clean end of the body is the end.
                    yield _Done()
                    return

    # --- key usage, send-data ---------------------------------------------------------------------------

    async def check_key(self, provider: str | None = None) -> KeyUsage:
        """`GET /check?key=`: the usage of `provider`'s key (the seed demands the key in the query)."""
        if provider is None:
            chosen = [
                p for p in self._providers if C.CHECK in p.capabilities and p.config.api_key is not None
            ]
            if not chosen:
                raise CapabilityUnavailable("check")
            p = chosen[0]
        else:
            p = self._named(provider, C.CHECK)
        if p.config.api_key is None:
            raise ParameterError("provider", f"{p.name!r} has no API key to check (set api_key_env)")
        key = p.config.api_key.reveal()

        async def call(p: _Provider, _: None, budget: float) -> KeyUsage:
            response = await self._transport.send(
                p, C.CHECK, params={"key": key}, limit=p.config.max_json_bytes, budget=budget, with_key=False
            )
            return parsing.parse_key_usage(response.json(), p.name)

        return await self._failover("check", [(p, None)], call)

    async def send_data(self, request: SendDataRequest, *, provider: str | None = None) -> SendDataResult:
        """digicord `POST /send-data`. Not resent after a timeout: it would post twice."""
        body = profiles.send_data_body(request)
        if provider is not None:
            plans: list[tuple[_Provider, dict[str, Any]]] = [(self._named(provider, C.SEND_DATA), body)]
        else:
            plans = self._plan((C.SEND_DATA,), None, lambda p: body)

        async def call(p: _Provider, body: dict[str, Any], budget: float) -> SendDataResult:
            response = await self._transport.send(
                p, C.SEND_DATA, json=body, limit=p.config.max_json_bytes, budget=budget
            )
            if not response.data.strip():
                return SendDataResult(provider=p.name)
            return parsing.parse_send_data(response.json(), p.name)

        return await self._failover("send_data", plans, call, idempotent=False)

    # --- health ---------------------------------------------------------------------------------------

    async def health(self) -> list[ProviderHealth]:
        """Reachability and capabilities of every provider, for `python -m bot doctor`."""
        return list(await asyncio.gather(*(self._health_of(p) for p in self._providers)))

    async def _health_of(self, p: _Provider) -> ProviderHealth:
        capability = C.MODELS if C.MODELS in p.capabilities else C.CHAT
        endpoint = p.profile.endpoint(capability)
        timeout = aiohttp.ClientTimeout(
            total=min(p.config.timeout, 15.0), sock_connect=p.config.connect_timeout
        )
        started = self._clock()
        status: int | None = None
        body = b""
        ctype = ""
        error: BaseException | None = None
        try:
            async with self._session.get(
                p.url(endpoint), headers=p.headers(), timeout=timeout, allow_redirects=False
            ) as response:
                status = response.status
                ctype = response.headers.get("Content-Type", "")
                body = await read_limited(response, p.config.max_json_bytes)
        except Exception as exc:
            error = exc
        latency = round((self._clock() - started) * 1000, 1)
        return health.assess(
            p.config,
            p.profile,
            probe=capability,
            status=status,
            body=body,
            content_type=ctype,
            error=error,
            latency_ms=latency,
            redact=self._redactor,
            default_model=self.default_model(p.name),
        )

    # --- routing --------------------------------------------------------------------------------------

    def _named(self, name: str, capability: Capability) -> _Provider:
        for p in self._providers:
            if p.name == name:
                if capability not in p.capabilities:
                    raise ParameterError(
                        "provider", f"{name!r} ({p.profile.name}) does not offer {capability.value}"
                    )
                return p
        raise ParameterError("provider", f"names no configured provider ({name!r})")

    def _plan(
        self, capabilities: Iterable[Capability], model: str | None, prepare: Callable[[_Provider], P]
    ) -> list[tuple[_Provider, P]]:
        """Providers that offer the capability, in order, each with its request already built.

        Every request is built (and so validated) before anything is sent.
        """
        wanted = tuple(capabilities)
        candidates = [p for p in self._providers if any(c in p.capabilities for c in wanted)]
        if not candidates:
            raise CapabilityUnavailable(wanted[0].value)
        if model is not None and wanted[0] in (C.CHAT, C.CHAT_STREAM, C.VISION_CHAT):
            listing = [p for p in candidates if model in p.config.models]
            open_ = [p for p in candidates if not p.config.models]
            candidates = listing + open_
            if not candidates:
                raise ParameterError("model", f"{model!r} is not offered by any configured provider")
        plans: list[tuple[_Provider, P]] = []
        first_error: ParameterError | None = None
        for p in candidates:
            try:
                plans.append((p, prepare(p)))
            except ParameterError as exc:
                log.debug("provider %s cannot take this request: %s", p.name, exc.user_message)
                # A complaint about another parameter is more telling than "wrong model for this
                # dialect": it comes from the provider whose dialect the model belongs to.
                if first_error is None or (first_error.parameter == "model" and exc.parameter != "model"):
                    first_error = exc
        if not plans:
            assert first_error is not None
            raise first_error
        return plans

    async def _failover(
        self,
        what: str,
        plans: Sequence[tuple[_Provider, P]],
        call: Callable[[_Provider, P, float], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        """A plain call: each attempt is one request; the first success is the answer."""
        routes = [(self._routes[p.name], prepared) for p, prepared in plans]
        async with contextlib.aclosing(self._engine.attempts(what, routes, idempotent=idempotent)) as tries:
            async for attempt in tries:
                try:
                    result = await call(attempt.provider, attempt.prepared, attempt.budget)
                except Exception as exc:
                    attempt.failed(classify(exc))
                else:
                    attempt.succeeded()
        return result

    async def _stream_failover(
        self,
        what: str,
        plans: Sequence[tuple[_Provider, P]],
        once: Callable[[_Provider, P], AsyncGenerator[Item | _Done, None]],
        text_of: Callable[[Item], str],
    ) -> AsyncGenerator[Item | StreamEnd, None]:
        """A streamed call: fails over until the first chunk; a later break ends it incomplete."""
        routes = [(self._routes[p.name], prepared) for p, prepared in plans]
        end: StreamEnd | None = None
        async with contextlib.aclosing(self._engine.attempts(what, routes)) as tries:
            async for attempt in tries:
                p = attempt.provider
                parts: list[str] = []
                try:
                    async with contextlib.aclosing(once(p, attempt.prepared)) as items:
                        async for item in items:
                            if isinstance(item, _Done):
                                attempt.succeeded()
                                end = StreamEnd(
                                    complete=True,
                                    provider=p.name,
                                    text="".join(parts),
                                    finish_reason=item.finish_reason,
                                )
                                break
                            parts.append(text_of(item))
                            yield item
                        else:
                            raise Failure(None, "the stream ended without an end marker", retryable=True)
                except Exception as exc:
                    failure = classify(exc)
                    if not parts:
                        attempt.failed(failure)
                        continue
                    reason = self._redactor(f"broke after the first chunk: {failure.reason}")
                    attempt.failed(Failure(failure.status, reason, retryable=False), final=True)
                    end = StreamEnd(complete=False, provider=p.name, text="".join(parts), reason=reason)
        # The attempt loop has recorded the outcome (breaker included) before the end is handed out.
        assert end is not None
        yield end


# --- helpers ----------------------------------------------------------------------------------------


def _expect_image(response: Body) -> None:
    data = response.data
    if parsing.looks_like_html(data, response.content_type):
        raise ShapeError("answered with an HTML page instead of an image")
    if not data:
        raise ShapeError("answered with an empty image")
    if not (data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise ShapeError("answered with something that is not an image")


def _expect_mp3(response: Body) -> None:
    data = response.data
    if parsing.looks_like_html(data, response.content_type):
        raise ShapeError("answered with an HTML page instead of audio")
    if not data:
        raise ShapeError("answered with empty audio")
    if not (data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)):
        raise ShapeError("answered with something that is not MP3 audio")
