"""Typed requests and responses: what cogs hand the provider client and what they get back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from bot.providers.errors import AttemptRecord


class Capability(StrEnum):
    """Everything a gateway can do; a profile lists the ones it speaks."""

    CHAT = "chat"
    CHAT_STREAM = "chat_stream"
    MODELS = "models"
    VISION_MODELS = "vision_models"
    FLUX_MODELS = "flux_models"
    IMAGINE_MODELS = "imagine_models"
    IMAGINE = "imagine"
    IMAGINE2 = "imagine2"
    IMAGE_GENERATIONS = "image_generations"
    FLUX = "flux"
    VISION_CHAT = "vision_chat"
    VISION_URL = "vision_url"
    SUNO = "suno"
    SUNO_STATUS = "suno_status"
    SPEECH = "speech"
    ASK = "ask"
    CHECK = "check"
    SEND_DATA = "send_data"


ModelKind = Literal["chat", "imagine", "flux", "vision", "voice", "song"]
"""Every kind of model the bot offers: chat, image (imagine), FLUX, vision, speech voices, song models."""
Role = Literal["system", "user", "assistant", "function"]


# --- chat -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL (http(s) or a `data:` URL). Each profile sends it in its own form."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    role: Role
    content: str | tuple[ContentPart, ...]
    name: str | None = None
    function_call: Mapping[str, Any] | None = None

    @classmethod
    def system(cls, text: str) -> ChatMessage:
        return cls(role="system", content=text)

    @classmethod
    def user(cls, content: str | Sequence[ContentPart]) -> ChatMessage:
        return cls(role="user", content=content if isinstance(content, str) else tuple(content))

    @classmethod
    def assistant(cls, text: str) -> ChatMessage:
        return cls(role="assistant", content=text)

    @property
    def text_length(self) -> int:
        if isinstance(self.content, str):
            return len(self.content)
        return sum(len(p.text) for p in self.content if isinstance(p, TextPart))

    @property
    def has_images(self) -> bool:
        return not isinstance(self.content, str) and any(isinstance(p, ImagePart) for p in self.content)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """An OpenAI-style chat request with the parameters the seeds list; None means "not sent"."""

    messages: Sequence[ChatMessage]
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    n: int | None = None
    stop: str | Sequence[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ChatChoice:
    index: int
    text: str
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class CalledFunction:
    """A function purlabs called on the model's behalf (`calledFunctions`)."""

    name: str
    arguments: str
    result: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResponse:
    provider: str
    model: str
    choices: tuple[ChatChoice, ...]
    id: str | None = None
    usage: Usage | None = None
    upstream: str | None = None
    """The gateway's own upstream (digicord/purlabs `provider` field), not our provider name."""
    overwritten: bool | None = None
    called_functions: tuple[CalledFunction, ...] = ()
    upstream_failures: tuple[AttemptRecord, ...] = ()
    """purlabs `cache.error.records`: upstreams that failed before one answered."""

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of streamed text. Only chunks that carry text are yielded."""

    text: str
    provider: str
    index: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnd:
    """The last item of every stream. `complete` is False when the stream broke after text arrived:
    `text` then holds what arrived, and must be shown as cut off, never as a whole answer."""

    complete: bool
    provider: str
    text: str
    finish_reason: str | None = None
    reason: str | None = None


# --- models ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    kind: ModelKind
    provider: str
    owned_by: str | None = None


# --- images ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagineRequest:
    """`GET /imagine` (or `/imagine2`). airforce speaks prompt/size/seed/model; anyai speaks
    prompt/negative_prompt/width/height/steps/seed/model. A provider whose dialect cannot express
    the request is not asked."""

    prompt: str
    model: str | None = None
    size: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    fast: bool = False
    """Use `/imagine2` (airforce's "fast and stable" copy)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageBytes:
    data: bytes
    content_type: str
    provider: str
    model: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageGenerationRequest:
    """`POST /images/generations` (dall-e style)."""

    prompt: str
    model: str = "dall-e-3"
    n: int = 1
    quality: Literal["standard", "hd"] | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] = "url"


@dataclass(frozen=True, slots=True, kw_only=True)
class FluxRequest:
    """digicord `POST /images/flux/generations`."""

    prompt: str
    model: str | None = None
    steps: int | None = None
    n: int = 1
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    response_format: Literal["url", "b64_json"] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedImage:
    """One image: a URL to fetch, or the decoded bytes when the gateway sent base64."""

    url: str | None = None
    data: bytes | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSet:
    images: tuple[GeneratedImage, ...]
    provider: str
    model: str | None = None


# --- vision ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VisionRequest:
    image_url: str
    prompt: str = "What is in this image?"
    model: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisionResult:
    text: str
    provider: str
    model: str | None = None


# --- songs, speech, search ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SunoRequest:
    prompt: str
    model: Literal["chirp-v2-xxl-alpha", "chirp-v3-5", "chirp-v3-0"] = "chirp-v3-5"
    instrumental: bool = False
    style: str | None = None
    custom: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SunoJob:
    """Clip ids from `POST /suno`; poll each with `suno_status(clip_id, provider=job.provider)`."""

    clip_ids: tuple[str, ...]
    provider: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SunoClip:
    clip_id: str
    status: str
    provider: str
    audio_url: str | None = None
    image_url: str | None = None
    video_url: str | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechRequest:
    text: str
    voice: Literal["alex", "sophia"] = "alex"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechAudio:
    data: bytes
    content_type: str
    provider: str


@dataclass(frozen=True, slots=True)
class AskChunk:
    """One GlobalAsk line: a piece of the answer and the source it came from."""

    message: str
    url: str | None
    provider: str


# --- key usage, send-data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUsage:
    """`/check?key=` answer. The seeds do not document its fields, so scalar values are kept
    flattened with dotted names (e.g. `usage.llms.day`)."""

    provider: str
    plan: str | None
    values: Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class EmbedField:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Embed:
    """digicord's send-data embed schema (the one Concord's embeds use)."""

    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = None
    image_url: str | None = None
    author_name: str | None = None
    footer_text: str | None = None
    footer_icon_url: str | None = None
    fields: tuple[EmbedField, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDataRequest:
    channel_id: str
    content: str = ""
    embeds: Sequence[Embed] = ()
    components: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDataResult:
    provider: str
    message_id: str | None = None


# --- health -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderHealth:
    name: str
    profile: str
    base_url: str
    reachable: bool
    latency_ms: float | None
    capabilities: tuple[str, ...]
    problem: str | None = None
    fix: str | None = None
    models: tuple[str, ...] = field(default=())
    default_model: str | None = None
    """The chat model sent when a request names none (None: not known yet)."""
