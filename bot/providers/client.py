"""The provider client: routing by capability and model, retries, failover and circuit breaking."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random as _random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp

from bot.providers import health, parsing, profiles
from bot.providers.config import ProviderConfig
from bot.providers.errors import (
    AttemptRecord,
    CapabilityUnavailable,
    OutcomeUnknown,
    ParameterError,
    ProviderUnavailable,
)
from bot.providers.parsing import ShapeError
from bot.providers.profiles import MODEL_LIST_CAPABILITY, PROFILES, Endpoint, Profile
from bot.providers.redact import Redactor, safe_url
from bot.providers.streaming import JsonLinesDecoder, SSEDecoder, StreamProtocolError
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

USER_AGENT = "Concord/0.1 (+https://github.com/concord-bot)"
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def new_session(*, limit: int = 100, limit_per_host: int = 8) -> aiohttp.ClientSession:
    """The one session a process should share, with a per-host connection limit."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 10.0
    """A Retry-After longer than this is not waited for: the next provider is tried instead."""
    breaker_threshold: int = 3
    breaker_cooldown: float = 30.0
    call_deadline: float = 120.0
    """Wall-clock budget for one call across every retry and provider (streams: until the first chunk)."""
    models_ttl: float = 300.0


class _Failure(Exception):
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
class _Breaker:
    failures: int = 0
    open_until: float = 0.0

    def available(self, now: float) -> bool:
        return now >= self.open_until

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def failure(self, now: float, policy: RetryPolicy) -> None:
        self.failures += 1
        if self.failures >= policy.breaker_threshold:
            self.open_until = max(self.open_until, now + policy.breaker_cooldown)

    def cool_until(self, until: float) -> None:
        self.open_until = max(self.open_until, until)


@dataclass(slots=True)
class _Provider:
    config: ProviderConfig
    profile: Profile
    semaphore: asyncio.Semaphore
    breaker: _Breaker = field(default_factory=_Breaker)

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
class _Body:
    status: int
    content_type: str
    data: bytes

    def json(self) -> Any:
        return parsing.decode_json(self.data, self.content_type)


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
        self._sleep = sleep
        self._random = random
        self.policy = policy or RetryPolicy()
        ordered = sorted(enumerate(providers), key=lambda pair: (pair[1].priority, pair[0]))
        self._providers = [
            _Provider(config=c, profile=PROFILES[c.profile], semaphore=asyncio.Semaphore(c.max_concurrency))
            for _, c in ordered
        ]
        self._redactor = Redactor(c.api_key.reveal() for c in providers if c.api_key is not None)
        self._model_cache: dict[tuple[str, ModelKind], tuple[float, list[ModelInfo]]] = {}

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

    # --- chat ---------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        profiles.validate_chat(request)
        plans = self._plan(
            (C.CHAT,),
            request.model,
            lambda p: profiles.chat_body(
                p.profile, request, stream=False, max_message_chars=p.config.max_message_chars
            ),
        )

        async def call(p: _Provider, body: dict[str, Any], budget: float) -> ChatResponse:
            response = await self._send(p, C.CHAT, json=body, limit=p.config.max_json_bytes, budget=budget)
            return parsing.parse_chat(response.json(), p.name)

        return await self._failover("chat", plans, call)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk | StreamEnd]:
        """Text chunks as they arrive, then one StreamEnd. Close the iterator (`aclosing`) if you stop early.

        A stream that breaks before its first chunk fails over; one that breaks later ends with
        `StreamEnd(complete=False)` holding the partial text.
        """
        profiles.validate_chat(request)
        plans = self._plan(
            (C.CHAT_STREAM,),
            request.model,
            lambda p: profiles.chat_body(
                p.profile, request, stream=True, max_message_chars=p.config.max_message_chars
            ),
        )
        async for item in self._stream_failover("chat", plans, self._chat_stream_once, lambda c: c.text):
            yield item

    async def _chat_stream_once(
        self, p: _Provider, body: dict[str, Any]
    ) -> AsyncGenerator[ChatChunk | _Done, None]:
        async with self._open_stream(p, C.CHAT_STREAM, json=body) as (response, read):
            ctype = response.headers.get("Content-Type", "")
            if "text/event-stream" not in ctype:
                # A gateway that ignores `stream` and answers in one piece is still an answer.
                async with asyncio.timeout(p.config.timeout):
                    raw = await _read_limited(response, p.config.max_json_bytes)
                reply = parsing.parse_chat(parsing.decode_json(raw, ctype), p.name)
                if reply.text:
                    yield ChatChunk(reply.text, p.name, 0, reply.choices[0].finish_reason)
                yield _Done(reply.choices[0].finish_reason)
                return
            decoder = SSEDecoder()
            finish: str | None = None
            while True:
                data = await read()
                events = decoder.feed(data) if data else decoder.flush()
                for event in events:
                    if event.is_done:
                        yield _Done(finish)
                        return
                    for index, text, finish_reason in parsing.parse_chunk(event.json()):
                        if finish_reason and index == 0:
                            finish = finish_reason
                        if text:
                            yield ChatChunk(text, p.name, index, finish_reason)
                if not data:
                    if finish is not None:
                        # Ended cleanly after a finish_reason but without [DONE]: the answer is whole.
                        yield _Done(finish)
                        return
                    raise _Failure(None, "the stream ended before it was finished", retryable=True)

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
        key = (p.name, kind)
        cached = self._model_cache.get(key)
        if cached and not refresh and cached[0] > self._clock():
            return cached[1]

        async def call(p: _Provider, _: None, budget: float) -> list[ModelInfo]:
            response = await self._send(p, capability, limit=p.config.max_json_bytes, budget=budget)
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
            response = await self._send(
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
            response = await self._send(p, capability, json=body, limit=limit, budget=budget)
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
                    p.profile, chat, stream=False, max_message_chars=p.config.max_message_chars
                )
            return C.VISION_URL, profiles.vision_url_query(request)

        plans = self._plan((C.VISION_CHAT, C.VISION_URL), request.model, prepare)

        async def call(
            p: _Provider, prepared: tuple[Capability, dict[str, Any]], budget: float
        ) -> VisionResult:
            capability, payload = prepared
            if capability is C.VISION_CHAT:
                response = await self._send(
                    p, capability, json=payload, limit=p.config.max_json_bytes, budget=budget
                )
                reply = parsing.parse_chat(response.json(), p.name)
                if not reply.text.strip():
                    raise ShapeError("the description was empty")
                return VisionResult(text=reply.text, provider=p.name, model=reply.model or request.model)
            response = await self._send(
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
            response = await self._send(p, C.SUNO, json=body, limit=p.config.max_json_bytes, budget=budget)
            return parsing.parse_suno_job(response.json(), p.name)

        return await self._failover("suno", plans, call, idempotent=False)

    async def suno_status(self, clip_id: str, *, provider: str) -> SunoClip:
        """`GET /suno/<uuid>` on the provider that created the clip."""
        profiles.check_clip_id(clip_id)
        p = self._named(provider, C.SUNO_STATUS)

        async def call(p: _Provider, _: None, budget: float) -> SunoClip:
            response = await self._send(
                p, C.SUNO_STATUS, path_args={"clip_id": clip_id}, limit=p.config.max_json_bytes, budget=budget
            )
            return parsing.parse_suno_clip(response.json(), clip_id, p.name)

        return await self._failover("suno_status", [(p, None)], call)

    async def speech(self, request: SpeechRequest) -> SpeechAudio:
        """`GET /get-audio?text=&voice=`: MP3 bytes."""
        query = profiles.speech_query(request)
        plans = self._plan((C.SPEECH,), None, lambda p: query)

        async def call(p: _Provider, query: dict[str, str], budget: float) -> SpeechAudio:
            response = await self._send(
                p, C.SPEECH, params=query, limit=p.config.max_audio_bytes, budget=budget
            )
            _expect_mp3(response)
            return SpeechAudio(
                data=response.data,
                content_type=response.content_type.split(";")[0] or "audio/mpeg",
                provider=p.name,
            )

        return await self._failover("speech", plans, call)

    async def ask(self, prompt: str) -> AsyncIterator[AskChunk | StreamEnd]:
        """GlobalAsk: `{message, url}` pieces as they arrive, then one StreamEnd."""
        query = profiles.ask_query(prompt)
        plans = self._plan((C.ASK,), None, lambda p: query)
        async for item in self._stream_failover("ask", plans, self._ask_once, lambda c: c.message):
            yield item

    async def _ask_once(self, p: _Provider, query: dict[str, str]) -> AsyncGenerator[AskChunk | _Done, None]:
        async with self._open_stream(p, C.ASK, params=query) as (response, read):
            if parsing.looks_like_html(b"", response.headers.get("Content-Type", "")):
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
            response = await self._send(
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
            response = await self._send(
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
                body = await _read_limited(response, p.config.max_json_bytes)
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

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            return retry_after if retry_after <= self.policy.retry_after_cap else None
        delay = min(self.policy.backoff_max, self.policy.backoff_base * 2**attempt)
        return delay * (0.5 + 0.5 * self._random())

    def _record(self, attempts: list[AttemptRecord], p: _Provider, what: str, failure: _Failure) -> None:
        reason = self._redactor(failure.reason)
        attempts.append(AttemptRecord(p.name, failure.status, reason))
        log.warning("provider %s (%s) failed %s: %s", p.name, p.profile.name, what, reason)
        now = self._clock()
        if failure.counts:
            p.breaker.failure(now, self.policy)
        if failure.retry_after is not None and failure.retry_after > self.policy.retry_after_cap:
            p.breaker.cool_until(now + failure.retry_after)

    async def _failover(
        self,
        what: str,
        plans: Sequence[tuple[_Provider, P]],
        call: Callable[[_Provider, P, float], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        attempts: list[AttemptRecord] = []
        deadline = self._clock() + self.policy.call_deadline
        for p, prepared in plans:
            if not p.breaker.available(self._clock()):
                attempts.append(AttemptRecord(p.name, None, "skipped: cooling down after recent failures"))
                continue
            for attempt in range(p.config.retries + 1):
                budget = deadline - self._clock()
                if budget <= 0:
                    attempts.append(AttemptRecord(p.name, None, "skipped: the call's deadline has passed"))
                    raise ProviderUnavailable(what, attempts)
                try:
                    result = await self._guard(call(p, prepared, budget))
                except _Failure as failure:
                    self._record(attempts, p, what, failure)
                    if failure.unknown_outcome and not idempotent:
                        raise OutcomeUnknown(what, attempts) from None
                    if not failure.retryable or attempt == p.config.retries:
                        break
                    if not p.breaker.available(self._clock()):
                        break
                    delay = self._backoff(attempt, failure.retry_after)
                    if delay is None or self._clock() + delay >= deadline:
                        break
                    await self._sleep(delay)
                else:
                    p.breaker.success()
                    return result
        raise ProviderUnavailable(what, attempts)

    @staticmethod
    async def _guard(awaitable: Awaitable[T]) -> T:
        """Turn transport and shape errors into classified failures."""
        try:
            return await awaitable
        except _Failure:
            raise
        except Exception as exc:
            raise _classify(exc) from None

    async def _stream_failover(
        self,
        what: str,
        plans: Sequence[tuple[_Provider, P]],
        once: Callable[[_Provider, P], AsyncGenerator[Item | _Done, None]],
        text_of: Callable[[Item], str],
    ) -> AsyncIterator[Item | StreamEnd]:
        attempts: list[AttemptRecord] = []
        deadline = self._clock() + self.policy.call_deadline
        for p, prepared in plans:
            if not p.breaker.available(self._clock()):
                attempts.append(AttemptRecord(p.name, None, "skipped: cooling down after recent failures"))
                continue
            for attempt in range(p.config.retries + 1):
                if self._clock() >= deadline:
                    attempts.append(AttemptRecord(p.name, None, "skipped: the call's deadline has passed"))
                    raise ProviderUnavailable(what, attempts)
                parts: list[str] = []
                started = False
                try:
                    async with contextlib.aclosing(once(p, prepared)) as items:
                        async for item in items:
                            if isinstance(item, _Done):
                                p.breaker.success()
                                yield StreamEnd(
                                    complete=True,
                                    provider=p.name,
                                    text="".join(parts),
                                    finish_reason=item.finish_reason,
                                )
                                return
                            started = True
                            parts.append(text_of(item))
                            yield item
                    raise _Failure(None, "the stream ended without an end marker", retryable=True)
                except Exception as exc:
                    failure = exc if isinstance(exc, _Failure) else _classify(exc)
                    if started:
                        reason = self._redactor(f"broke after the first chunk: {failure.reason}")
                        self._record(attempts, p, what, _Failure(failure.status, reason, retryable=False))
                        yield StreamEnd(complete=False, provider=p.name, text="".join(parts), reason=reason)
                        return
                    self._record(attempts, p, what, failure)
                    if (
                        not failure.retryable
                        or attempt == p.config.retries
                        or not p.breaker.available(self._clock())
                    ):
                        break
                    delay = self._backoff(attempt, failure.retry_after)
                    if delay is None or self._clock() + delay >= deadline:
                        break
                    await self._sleep(delay)
        raise ProviderUnavailable(what, attempts)

    # --- transport --------------------------------------------------------------------------------------

    async def _send(
        self,
        p: _Provider,
        capability: Capability,
        *,
        limit: int,
        budget: float,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        path_args: Mapping[str, str] | None = None,
        with_key: bool = True,
    ) -> _Body:
        endpoint = p.profile.endpoint(capability)
        url = p.url(endpoint, **(path_args or {}))
        timeout = aiohttp.ClientTimeout(
            total=max(0.001, min(p.config.timeout, budget)), sock_connect=p.config.connect_timeout
        )
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
            data = await _read_limited(response, limit)
            if not 200 <= response.status < 300:
                raise _status_failure(response.status, response.headers, data)
            return _Body(response.status, response.headers.get("Content-Type", ""), data)

    @contextlib.asynccontextmanager
    async def _open_stream(
        self,
        p: _Provider,
        capability: Capability,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, Callable[[], Awaitable[bytes]]]]:
        """Open a streamed response; `read()` returns the next bytes (b"" at the end) under the
        first-byte, idle and total deadlines and the stream size cap."""
        endpoint = p.profile.endpoint(capability)
        url = p.url(endpoint)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_deadline = started + p.config.first_byte_timeout
        total_deadline = started + p.config.stream_timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=p.config.connect_timeout)
        state = {"received": 0, "first": True}
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
                raise _Failure(
                    None,
                    f"no first byte within {p.config.first_byte_timeout:g} s",
                    retryable=True,
                    unknown_outcome=True,
                ) from None
            try:
                if not 200 <= response.status < 300:
                    raise _status_failure(
                        response.status, response.headers, await _read_limited(response, 65536)
                    )

                async def read() -> bytes:
                    now = loop.time()
                    if state["first"]:
                        until, what = first_deadline, f"no data within {p.config.first_byte_timeout:g} s"
                    else:
                        until, what = now + p.config.idle_timeout, f"stalled for {p.config.idle_timeout:g} s"
                    if total_deadline < until:
                        until, what = (
                            total_deadline,
                            f"ran past the {p.config.stream_timeout:g} s stream limit",
                        )
                    try:
                        async with asyncio.timeout(max(0.0, until - now)):
                            data = await response.content.readany()
                    except TimeoutError:
                        raise _Failure(None, f"the stream {what}", retryable=True) from None
                    state["received"] += len(data)
                    if data:
                        state["first"] = False
                    if state["received"] > p.config.max_json_bytes:
                        raise _Failure(None, "the stream exceeded the size limit", retryable=False)
                    return data

                yield response, read
            finally:
                response.close()


# --- helpers ----------------------------------------------------------------------------------------


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` bytes."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise _Failure(
            response.status,
            f"the response was {declared} bytes, over the {limit}-byte limit",
            retryable=False,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise _Failure(response.status, f"the response exceeded the {limit}-byte limit", retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_failure(status: int, headers: Mapping[str, str], body: bytes) -> _Failure:
    detail = parsing.short(body.decode("utf-8", errors="replace")) if body else "no details"
    if status == 429:
        retry_after = _retry_after(headers)
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return _Failure(status, f"rate limited{wait}", retryable=True, retry_after=retry_after)
    if status == 408 or status >= 500:
        return _Failure(status, f"server error: {detail}", retryable=True)
    if status in (401, 403):
        return _Failure(status, f"the API key was refused: {detail}", retryable=False)
    if status == 404:
        return _Failure(status, f"not found: {detail}", retryable=False, counts=False)
    if 300 <= status < 400:
        return _Failure(status, "redirected (check base_url)", retryable=False)
    return _Failure(status, f"request refused: {detail}", retryable=False, counts=False)


def _classify(exc: BaseException) -> _Failure:
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, ShapeError | StreamProtocolError):
        return _Failure(None, str(exc), retryable=True)
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        # The request never left: safe to retry even for job-creating calls.
        return _Failure(None, f"could not connect ({type(exc).__name__})", retryable=True)
    if isinstance(exc, TimeoutError):
        return _Failure(None, "timed out waiting for the answer", retryable=True, unknown_outcome=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _Failure(None, "the response was cut off", retryable=True, unknown_outcome=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return _Failure(
            None, f"the connection dropped ({type(exc).__name__})", retryable=True, unknown_outcome=True
        )
    if isinstance(exc, aiohttp.ClientError):
        return _Failure(
            None, f"HTTP client error ({type(exc).__name__})", retryable=True, unknown_outcome=True
        )
    log.exception("unexpected error talking to a provider")
    return _Failure(None, f"unexpected error ({type(exc).__name__})", retryable=False)


def _expect_image(response: _Body) -> None:
    data = response.data
    if parsing.looks_like_html(data, response.content_type):
        raise ShapeError("answered with an HTML page instead of an image")
    if not data:
        raise ShapeError("answered with an empty image")
    if not (data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise ShapeError("answered with something that is not an image")


def _expect_mp3(response: _Body) -> None:
    data = response.data
    if parsing.looks_like_html(data, response.content_type):
        raise ShapeError("answered with an HTML page instead of audio")
    if not data:
        raise ShapeError("answered with empty audio")
    if not (data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)):
        raise ShapeError("answered with something that is not MP3 audio")
