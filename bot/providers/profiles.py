"""Each gateway's dialect: paths, methods, parameter names and ranges, checked before any request."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.providers.errors import ParameterError
from bot.providers.types import (
    Capability,
    ChatMessage,
    ChatRequest,
    FluxRequest,
    ImageGenerationRequest,
    ImagePart,
    ImagineRequest,
    SendDataRequest,
    SpeechRequest,
    SunoRequest,
    TextPart,
    VisionRequest,
)

C = Capability


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: Literal["GET", "POST"]
    path: str
    bare: bool = False
    """True when the seed documents the path only at the server root (`/get-audio`, `/check`)."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    prefix: str
    endpoints: Mapping[Capability, Endpoint]
    chat_params: frozenset[str]
    roles: frozenset[str]
    image_part_form: Literal["object", "string"] = "object"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset(self.endpoints)

    def endpoint(self, capability: Capability) -> Endpoint:
        return self.endpoints[capability]


_CHAT = Endpoint("POST", "/chat/completions")
_MODELS = Endpoint("GET", "/models")
_OPENAI_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
    }
)
_AIRFORCE_PARAMS = frozenset({"temperature", "top_p", "top_k", "max_tokens"})
_BASIC_ROLES = frozenset({"system", "user", "assistant"})

PROFILES: dict[str, Profile] = {
    "digicord": Profile(
        name="digicord",
        prefix="/api/v1",
        endpoints={
            C.CHAT: _CHAT,
            C.CHAT_STREAM: _CHAT,
            C.VISION_CHAT: _CHAT,
            C.MODELS: _MODELS,
            C.VISION_MODELS: Endpoint("GET", "/vision-models"),
            C.FLUX_MODELS: Endpoint("GET", "/images/flux/models"),
            C.FLUX: Endpoint("POST", "/images/flux/generations"),
            C.SEND_DATA: Endpoint("POST", "/send-data"),
        },
        # The digicord document lists only messages, model and stream.
        chat_params=frozenset(),
        roles=_BASIC_ROLES,
        image_part_form="string",
    ),
    "airforce": Profile(
        name="airforce",
        prefix="/v1",
        endpoints={
            C.CHAT: _CHAT,
            C.CHAT_STREAM: _CHAT,
            C.MODELS: _MODELS,
            C.IMAGINE: Endpoint("GET", "/imagine"),
            C.IMAGINE2: Endpoint("GET", "/imagine2"),
            C.IMAGINE_MODELS: Endpoint("GET", "/imagine/models", bare=True),
            C.ASK: Endpoint("GET", "/ask"),
            C.VISION_URL: Endpoint("GET", "/images/vision"),
            C.SUNO: Endpoint("POST", "/suno"),
            C.SUNO_STATUS: Endpoint("GET", "/suno/{clip_id}"),
            C.SPEECH: Endpoint("GET", "/get-audio", bare=True),
            C.CHECK: Endpoint("GET", "/check", bare=True),
        },
        chat_params=_AIRFORCE_PARAMS,
        roles=_BASIC_ROLES,
    ),
    "anyai": Profile(
        name="anyai",
        prefix="/v1",
        endpoints={
            C.CHAT: _CHAT,
            C.CHAT_STREAM: _CHAT,
            C.MODELS: _MODELS,
            C.IMAGE_GENERATIONS: Endpoint("POST", "/images/generations"),
            C.IMAGINE: Endpoint("GET", "/imagine"),
            C.ASK: Endpoint("GET", "/ask"),
            C.VISION_URL: Endpoint("GET", "/images/vision"),
            C.CHECK: Endpoint("GET", "/check", bare=True),
        },
        chat_params=_AIRFORCE_PARAMS,
        roles=_BASIC_ROLES,
    ),
    "purlabs": Profile(
        name="purlabs",
        prefix="",
        endpoints={
            C.CHAT: Endpoint("POST", "/discord/chat/completions"),
            C.CHAT_STREAM: Endpoint("POST", "/discord/chat/completions"),
        },
        chat_params=_OPENAI_PARAMS,
        roles=_BASIC_ROLES | {"function"},
    ),
    "openai": Profile(
        name="openai",
        prefix="",
        endpoints={
            C.CHAT: _CHAT,
            C.CHAT_STREAM: _CHAT,
            C.VISION_CHAT: _CHAT,
            C.MODELS: _MODELS,
            C.IMAGE_GENERATIONS: Endpoint("POST", "/images/generations"),
        },
        chat_params=_OPENAI_PARAMS,
        roles=_BASIC_ROLES | {"function"},
    ),
}

MODEL_LIST_CAPABILITY: dict[str, Capability] = {
    "chat": C.MODELS,
    "vision": C.VISION_MODELS,
    "flux": C.FLUX_MODELS,
    "imagine": C.IMAGINE_MODELS,
    "voice": C.SPEECH,
    "song": C.SUNO,
}
"""Per model kind, the capability that lists (or, for voices and songs, uses) its models."""

# The model each gateway's document names as its default, per kind (used when a request and the
# provider's config name none).
DOCUMENTED_DEFAULTS: dict[str, dict[str, str]] = {
    "digicord": {
        "chat": "google/gemini-flash-1.5",
        "vision": "google/gemini-flash-1.5",
        "flux": "black-forest-labs/FLUX.1-schnell-Free",
    },
    "airforce": {"vision": "gemini-pro-vision", "song": "chirp-v3-5"},
    "anyai": {"vision": "gemini-pro-vision", "imagine": "sdxl"},
    "purlabs": {"chat": "clyde"},  # its example request names no model; the answer says "clyde"
    "openai": {},
}

# --- documented values ----------------------------------------------------------------------------

AIRFORCE_SIZES = ("1:1", "16:9", "9:16", "21:9", "9:21", "1:2", "2:1")
AIRFORCE_IMAGINE_MODELS = (
    "flux",
    "flux-realism",
    "flux-4o",
    "flux-pixel",
    "flux-3d",
    "flux-anime",
    "flux-disney",
    "any-dark",
    "stable-diffusion-xl-lightning",
    "stable-diffusion-xl-base",
)
ANYAI_IMAGINE_MODELS = ("sdxl", "pluto", "dall-e-2", "dall-e-3")
VISION_URL_MODELS = ("gpt-4o", "gpt-4o-mini", "gemini-pro-vision")
SUNO_MODELS = ("chirp-v2-xxl-alpha", "chirp-v3-5", "chirp-v3-0")
VOICES = ("alex", "sophia")
STATIC_MODELS: dict[str, tuple[str, ...]] = {"voice": VOICES, "song": SUNO_MODELS}
"""Kinds the gateways document as fixed lists rather than serve from an endpoint."""
DALLE_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
DALLE_PROMPT_LIMIT = {"dall-e-2": 1000, "dall-e-3": 4000}

# Limits the seeds leave open; these are Concord's own caps, kept generous.
MAX_PROMPT = 4000
MAX_SPEECH_TEXT = 1000
MAX_SEED = 2**32 - 1
IMAGE_SIDE = (64, 2048)

_CLIP_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_SNOWFLAKE = re.compile(r"^\d{15,21}$")
_TOKEN_ID = re.compile(r"^\d{1,7}$")


# --- small checks ---------------------------------------------------------------------------------


def _text(name: str, value: str | None, low: int, high: int, *, required: bool = True) -> None:
    if value is None:
        if required:
            raise ParameterError(name, "is required")
        return
    if not isinstance(value, str):
        raise ParameterError(name, "must be text")
    length = len(value.strip()) if low > 0 else len(value)
    if length < low or len(value) > high:
        raise ParameterError(name, f"must be {low} to {high} characters long (got {len(value)})")


def _number(name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ParameterError(name, f"must be a number from {low:g} to {high:g} (got {value!r})")


def _integer(name: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(name, f"must be a whole number from {low} to {high} (got {value!r})")


def _choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise ParameterError(name, f"must be one of {', '.join(allowed)} (got {value!r})")


def _url(name: str, value: str, *, allow_data: bool = False) -> None:
    if not isinstance(value, str) or not value:
        raise ParameterError(name, "is required")
    if value.startswith(("http://", "https://")) and len(value) <= 4096 and " " not in value:
        return
    if allow_data and value.startswith("data:image/") and ";base64," in value:
        return
    kinds = "an http(s) URL or a data:image URL" if allow_data else "an http(s) URL"
    raise ParameterError(name, f"must be {kinds}")


def _forbid(profile: str, request: object, names: Sequence[str], hint: str) -> None:
    for name in names:
        if getattr(request, name) is not None:
            raise ParameterError(name, f"is not understood by {profile}'s imagine ({hint})")


# --- chat -----------------------------------------------------------------------------------------


def validate_chat(request: ChatRequest) -> None:
    """Checks that hold whichever gateway answers."""
    if not request.messages:
        raise ParameterError("messages", "must hold at least one message")
    for i, message in enumerate(request.messages):
        _check_message(i, message)
    if request.model is not None:
        _text("model", request.model, 1, 200)
    _number("temperature", request.temperature, 0, 2)
    _number("top_p", request.top_p, 0, 1)
    _integer("top_k", request.top_k, 0, 1000)
    _integer("max_tokens", request.max_tokens, 1, 1_000_000)
    _integer("n", request.n, 1, 10)
    _number("presence_penalty", request.presence_penalty, -2, 2)
    _number("frequency_penalty", request.frequency_penalty, -2, 2)
    if request.stop is not None:
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        if not 1 <= len(stops) <= 4 or not all(isinstance(s, str) and s for s in stops):
            raise ParameterError("stop", "must be one to four non-empty strings")
    if request.logit_bias is not None:
        if len(request.logit_bias) > 300:
            raise ParameterError("logit_bias", "may hold at most 300 tokens")
        for token, bias in request.logit_bias.items():
            if not isinstance(token, str) or not _TOKEN_ID.match(token):
                raise ParameterError("logit_bias", f"keys must be token ids (got {token!r})")
            _number(f"logit_bias[{token}]", bias, -100, 100)
    if request.user is not None:
        _text("user", request.user, 1, 256)


def _check_message(i: int, message: ChatMessage) -> None:
    where = f"messages[{i}]"
    if message.role not in ("system", "user", "assistant", "function"):
        raise ParameterError(
            f"{where}.role", f"must be system, user, assistant or function (got {message.role!r})"
        )
    if message.role == "function" and not message.name:
        raise ParameterError(f"{where}.name", "is required for a function message")
    if message.name is not None:
        _text(f"{where}.name", message.name, 1, 64)
    if isinstance(message.content, str):
        _text(f"{where}.content", message.content, 0, 200_000)
        return
    if not message.content:
        raise ParameterError(f"{where}.content", "must not be an empty list of parts")
    if message.role != "user" and message.has_images:
        raise ParameterError(f"{where}.content", "may hold images only in a user message")
    for j, part in enumerate(message.content):
        if isinstance(part, TextPart):
            _text(f"{where}.content[{j}].text", part.text, 0, 200_000)
        elif isinstance(part, ImagePart):
            _url(f"{where}.content[{j}].image_url", part.url, allow_data=True)
        else:
            raise ParameterError(f"{where}.content[{j}]", "must be a text or image part")


def chat_body(
    profile: Profile,
    request: ChatRequest,
    *,
    stream: bool,
    max_message_chars: int | None,
    default_model: str | None = None,
) -> dict[str, Any]:
    """The JSON body in `profile`'s dialect; raises ParameterError when it cannot say the request."""
    messages = []
    for i, message in enumerate(request.messages):
        if message.role not in profile.roles:
            raise ParameterError(f"messages[{i}].role", f"{message.role!r} is not accepted by {profile.name}")
        if message.has_images and C.VISION_CHAT not in profile.capabilities:
            raise ParameterError(
                f"messages[{i}].content", f"holds an image, which {profile.name} chat cannot read"
            )
        if max_message_chars is not None and message.text_length > max_message_chars:
            raise ParameterError(
                f"messages[{i}].content",
                f"is {message.text_length} characters; this provider accepts at most {max_message_chars}",
            )
        messages.append(_message_json(profile, message))
    body: dict[str, Any] = {"messages": messages, "stream": stream}
    model = request.model if request.model is not None else default_model
    if model is not None:
        body["model"] = model
    for name in (
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "user",
    ):
        value = getattr(request, name)
        if value is not None and name in profile.chat_params:
            body[name] = value
    if request.stop is not None and "stop" in profile.chat_params:
        body["stop"] = request.stop if isinstance(request.stop, str) else list(request.stop)
    if request.logit_bias is not None and "logit_bias" in profile.chat_params:
        body["logit_bias"] = dict(request.logit_bias)
    return body


def _message_json(profile: Profile, message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    if isinstance(message.content, str):
        out["content"] = message.content
    else:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif profile.image_part_form == "string":
                # digicord's document shows image_url as a bare string.
                parts.append({"type": "image_url", "image_url": part.url})
            else:
                image: dict[str, Any] = {"url": part.url}
                if part.detail:
                    image["detail"] = part.detail
                parts.append({"type": "image_url", "image_url": image})
        out["content"] = parts
    if message.name is not None:
        out["name"] = message.name
    if message.function_call is not None:
        out["function_call"] = dict(message.function_call)
    return out


# --- images ---------------------------------------------------------------------------------------


def validate_imagine(request: ImagineRequest) -> None:
    _text("prompt", request.prompt, 1, MAX_PROMPT)
    if request.negative_prompt is not None:
        _text("negative_prompt", request.negative_prompt, 0, MAX_PROMPT)
    _integer("seed", request.seed, 0, MAX_SEED)
    _integer("width", request.width, *IMAGE_SIDE)
    _integer("height", request.height, *IMAGE_SIDE)
    _integer("steps", request.steps, 1, 100)
    known = (*AIRFORCE_IMAGINE_MODELS, *ANYAI_IMAGINE_MODELS)
    _choice("model", request.model, known)
    _choice("size", request.size, AIRFORCE_SIZES)


def imagine_query(profile: Profile, request: ImagineRequest) -> dict[str, str]:
    """airforce: prompt, size, seed, model.

    anyai: prompt, negative_prompt, width, height, steps, seed, model."""
    query = {"prompt": request.prompt}
    if profile.name == "airforce":
        _choice("model", request.model, AIRFORCE_IMAGINE_MODELS)
        _forbid("airforce", request, ("negative_prompt", "width", "height", "steps"), "it takes a size ratio")
        for name in ("size", "seed", "model"):
            value = getattr(request, name)
            if value is not None:
                query[name] = str(value)
        return query
    if profile.name == "anyai":
        if request.fast:
            raise ParameterError("fast", "asks for /imagine2, which anyai does not have")
        _choice("model", request.model, ANYAI_IMAGINE_MODELS)
        _forbid("anyai", request, ("size",), "it takes width and height")
        if request.model == "pluto":
            # anyai: "The Pluto model only accepts the prompt and negative_prompt parameters."
            for name in ("width", "height", "steps", "seed"):
                if getattr(request, name) is not None:
                    raise ParameterError(
                        name, "is not accepted by the pluto model (only prompt and negative_prompt)"
                    )
        for name in ("negative_prompt", "width", "height", "steps", "seed", "model"):
            value = getattr(request, name)
            if value is not None:
                query[name] = str(value)
        return query
    raise ParameterError("model", f"cannot be drawn by {profile.name}")


def generations_body(profile: Profile, request: ImageGenerationRequest) -> dict[str, Any]:
    _text("model", request.model, 1, 100)
    limit = DALLE_PROMPT_LIMIT.get(request.model, MAX_PROMPT)
    _text("prompt", request.prompt, 1, limit)
    _integer("n", request.n, 1, 10)
    if request.model == "dall-e-3" and request.n != 1:
        raise ParameterError("n", "must be 1 for dall-e-3")
    _choice("quality", request.quality, ("standard", "hd"))
    if request.quality == "hd" and request.model == "dall-e-2":
        raise ParameterError("quality", "hd is only offered by dall-e-3")
    _choice("response_format", request.response_format, ("url", "b64_json"))
    if request.size is not None:
        sizes = DALLE_SIZES.get(request.model)
        if sizes is not None:
            _choice("size", request.size, sizes)
        elif not _SIZE.match(request.size):
            raise ParameterError("size", f"must look like 1024x1024 (got {request.size!r})")
    if profile.name == "anyai" and request.model not in ("dall-e-3", "dall-e-2"):
        raise ParameterError("model", f"must be dall-e-3 or dall-e-2 on anyai (got {request.model!r})")
    body: dict[str, Any] = {"prompt": request.prompt, "model": request.model, "n": request.n}
    body["response_format"] = request.response_format
    if request.quality is not None:
        body["quality"] = request.quality
    if request.size is not None:
        body["size"] = request.size
    return body


def flux_body(request: FluxRequest) -> dict[str, Any]:
    _text("prompt", request.prompt, 1, MAX_PROMPT)
    if request.model is not None:
        _text("model", request.model, 1, 200)
    _integer("steps", request.steps, 1, 4)
    _integer("n", request.n, 1, 4)
    _integer("seed", request.seed, 0, MAX_SEED)
    for name, multiple in (("width", 16), ("height", 32)):
        value = getattr(request, name)
        _integer(name, value, *IMAGE_SIDE)
        if value is not None and value % multiple:
            raise ParameterError(name, f"must be a multiple of {multiple} (got {value})")
    if request.negative_prompt is not None:
        _text("negative_prompt", request.negative_prompt, 0, MAX_PROMPT)
    _choice("response_format", request.response_format, ("url", "b64_json"))
    body: dict[str, Any] = {"prompt": request.prompt, "n": request.n}
    for name in ("model", "steps", "seed", "width", "height", "negative_prompt", "response_format"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return body


# --- vision, songs, speech, search ------------------------------------------------------------------


def validate_vision(request: VisionRequest) -> None:
    _url("image_url", request.image_url, allow_data=True)
    _text("prompt", request.prompt, 1, MAX_PROMPT)
    if request.model is not None:
        _text("model", request.model, 1, 200)


def vision_url_query(request: VisionRequest) -> dict[str, str]:
    """`GET /images/vision?url=&model=`: an http(s) URL and one of three models; no prompt."""
    _url("image_url", request.image_url)
    _choice("model", request.model, VISION_URL_MODELS)
    query = {"url": request.image_url}
    if request.model is not None:
        query["model"] = request.model
    return query


def vision_chat_request(request: VisionRequest) -> ChatRequest:
    message = ChatMessage.user([TextPart(request.prompt), ImagePart(request.image_url)])
    return ChatRequest(messages=[message], model=request.model)


def suno_body(request: SunoRequest) -> dict[str, Any]:
    _choice("model", request.model, SUNO_MODELS)
    if request.custom:
        limit = 3000 if request.model == "chirp-v3-5" else 1250
        _text("prompt", request.prompt, 1, limit)
        _text("style", request.style, 1, 120)
    else:
        _text("prompt", request.prompt, 1, 200)
        _text("style", request.style, 1, 120, required=False)
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": request.prompt,
        # The seed sends these flags as the strings "true"/"false".
        "instrumental": "true" if request.instrumental else "false",
        "custom": "true" if request.custom else "false",
    }
    if request.style is not None:
        body["style"] = request.style
    return body


def check_clip_id(clip_id: str) -> None:
    if not isinstance(clip_id, str) or not _CLIP_ID.match(clip_id):
        raise ParameterError("clip_id", "must be a clip id as returned by the song request")


def speech_query(request: SpeechRequest) -> dict[str, str]:
    _text("text", request.text, 1, MAX_SPEECH_TEXT)
    _choice("voice", request.voice, VOICES)
    return {"text": request.text, "voice": request.voice}


def ask_query(prompt: str) -> dict[str, str]:
    _text("prompt", prompt, 1, MAX_PROMPT)
    return {"prompt": prompt}


# --- send-data --------------------------------------------------------------------------------------


def send_data_body(request: SendDataRequest) -> dict[str, Any]:
    if not isinstance(request.channel_id, str) or not _SNOWFLAKE.match(request.channel_id):
        raise ParameterError("channelId", "must be a Discord channel id (digits only)")
    _text("content", request.content, 0, 2000)
    if not request.content.strip() and not request.embeds:
        raise ParameterError("content", "must not be empty when there are no embeds")
    if len(request.embeds) > 10:
        raise ParameterError("embeds", "may hold at most 10 embeds")
    if len(request.components) > 5:
        raise ParameterError("components", "may hold at most 5 action rows")
    embeds = []
    total = 0
    for i, embed in enumerate(request.embeds):
        where = f"embeds[{i}]"
        for name, value, limit in (
            ("title", embed.title, 256),
            ("description", embed.description, 4096),
            ("author.name", embed.author_name, 256),
            ("footer.text", embed.footer_text, 2048),
        ):
            if value is not None:
                _text(f"{where}.{name}", value, 0, limit)
                total += len(value)
        for name, value in (
            ("url", embed.url),
            ("image.url", embed.image_url),
            ("footer.icon_url", embed.footer_icon_url),
        ):
            if value:
                _url(f"{where}.{name}", value)
        _integer(f"{where}.color", embed.color, 0, 0xFFFFFF)
        if len(embed.fields) > 25:
            raise ParameterError(f"{where}.fields", "may hold at most 25 fields")
        for j, fld in enumerate(embed.fields):
            _text(f"{where}.fields[{j}].name", fld.name, 1, 256)
            _text(f"{where}.fields[{j}].value", fld.value, 1, 1024)
            total += len(fld.name) + len(fld.value)
        embeds.append(
            {
                "title": embed.title or "",
                "description": embed.description or "",
                "url": embed.url or "",
                "color": embed.color,
                "image": {"url": embed.image_url or ""},
                "author": {"name": embed.author_name or ""},
                "footer": {"text": embed.footer_text or "", "icon_url": embed.footer_icon_url or ""},
                "fields": [{"name": f.name, "value": f.value, "inline": f.inline} for f in embed.fields],
            }
        )
    if total > 6000:
        raise ParameterError("embeds", f"hold {total} characters in all; Discord allows 6000")
    return {
        "channelId": request.channel_id,
        "content": request.content,
        "embeds": embeds,
        "components": [dict(c) for c in request.components],
    }
