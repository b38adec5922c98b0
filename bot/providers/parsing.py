"""Response shapes: untrusted gateway answers become typed objects, or a ShapeError."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from bot.providers.errors import AttemptRecord
from bot.providers.redact import REDACTOR
from bot.providers.types import (
    CalledFunction,
    ChatChoice,
    ChatResponse,
    GeneratedImage,
    ImageSet,
    KeyUsage,
    ModelInfo,
    ModelKind,
    SendDataResult,
    SunoClip,
    SunoJob,
    Usage,
)


class ShapeError(Exception):
    """The body was not what the seed documents; treated as a transient failure."""


def looks_like_html(body: bytes | str, content_type: str = "") -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:64].lstrip().lower()
    if isinstance(head, bytes):
        return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<title"))
    return head.startswith(("<!doctype", "<html", "<head", "<body", "<title"))


def decode_json(body: bytes, content_type: str) -> Any:
    if looks_like_html(body, content_type):
        raise ShapeError("answered with an HTML page instead of JSON")
    try:
        return json.loads(body)
    except ValueError:
        raise ShapeError("answered with a body that is not JSON") from None


def short(value: Any, limit: int = 80) -> str:
    """A one-line, bounded description of untrusted data for a reason string."""
    if value is None:
        return "no details"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if looks_like_html(text):
        return "an HTML error page"
    # Redacted before it is cut, so a key straddling the cut never survives in part.
    return REDACTOR.shorten(" ".join(text.split()), limit)


def _obj(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ShapeError(f"{what} was not a JSON object")
    return data


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def upstream_records(records: Any) -> tuple[AttemptRecord, ...]:
    """purlabs `records`: [{provider, response: {status, data}}]."""
    if not isinstance(records, list):
        return ()
    out = []
    for record in records:
        if not isinstance(record, Mapping):
            continue
        response = record.get("response")
        response = response if isinstance(response, Mapping) else {}
        status = response.get("status")
        out.append(
            AttemptRecord(
                provider=str(record.get("provider", "?"))[:40],
                status=status if isinstance(status, int) and not isinstance(status, bool) else None,
                reason=short(response.get("data")),
            )
        )
    return tuple(out)


def gateway_error(data: Any) -> str | None:
    """An error object inside a 200 (purlabs `{status: 500, message, records}`, OpenAI `{error}`)."""
    if not isinstance(data, Mapping) or "choices" in data:
        return None
    if "records" in data or isinstance(data.get("status"), int):
        records = upstream_records(data.get("records"))
        detail = ", ".join(f"{r.provider} {r.status}" for r in records)
        message = short(data["message"], 60) if data.get("message") else "failed"
        return f"gateway error: {message}" + (f" (upstreams: {detail})" if detail else "")
    if "error" in data:
        error = data["error"]
        detail_text = error.get("message") if isinstance(error, Mapping) else error
        return f"gateway error: {short(detail_text, 80)}"
    return None


def parse_chat(data: Any, provider: str) -> ChatResponse:
    error = gateway_error(data)
    if error:
        raise ShapeError(error)
    data = _obj(data, "the chat response")
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise ShapeError("the chat response had no choices")
    choices = []
    for i, raw in enumerate(raw_choices):
        raw = _obj(raw, "a choice")
        message = raw.get("message")
        if not isinstance(message, Mapping):
            raise ShapeError("a choice had no message")
        content = message.get("content")
        if content is None and message.get("function_call") is not None:
            content = ""
        if not isinstance(content, str):
            raise ShapeError("a choice's message content was not text")
        index = raw.get("index")
        choices.append(
            ChatChoice(
                index=index if isinstance(index, int) else i,
                text=content,
                finish_reason=_opt_str(raw, "finish_reason"),
            )
        )
    usage = None
    raw_usage = data.get("usage")
    if isinstance(raw_usage, Mapping):
        usage = Usage(
            _int(raw_usage.get("prompt_tokens")),
            _int(raw_usage.get("completion_tokens")),
            _int(raw_usage.get("total_tokens")),
        )
    called = []
    for entry in data.get("calledFunctions") or []:
        # purlabs: [[{name, arguments}, {role: "function", name, content}], ...]
        if isinstance(entry, list) and entry and isinstance(entry[0], Mapping):
            call = entry[0]
            result = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
            called.append(
                CalledFunction(
                    name=str(call.get("name", "")),
                    arguments=str(call.get("arguments", "")),
                    result=_opt_str(result, "content"),
                )
            )
    failures: tuple[AttemptRecord, ...] = ()
    cache = data.get("cache")
    if isinstance(cache, Mapping) and isinstance(cache.get("error"), Mapping):
        failures = upstream_records(cache["error"].get("records"))
    overwritten = data.get("overwritten")
    return ChatResponse(
        provider=provider,
        model=_opt_str(data, "model") or "",
        choices=tuple(choices),
        id=_opt_str(data, "id"),
        usage=usage,
        upstream=_opt_str(data, "provider"),
        overwritten=overwritten if isinstance(overwritten, bool) else None,
        called_functions=tuple(called),
        upstream_failures=failures,
    )


def parse_chunk(data: Any) -> list[tuple[int, str, str | None]]:
    """(index, text, finish_reason) for each choice of a `chat.completion.chunk`."""
    error = gateway_error(data)
    if error:
        raise ShapeError(error)
    data = _obj(data, "a stream chunk")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise ShapeError("a stream chunk had no choices")
    out = []
    for i, raw in enumerate(choices):
        raw = _obj(raw, "a chunk choice")
        delta = raw.get("delta")
        if delta is None:
            delta = raw.get("message") or {}
        if not isinstance(delta, Mapping):
            raise ShapeError("a chunk choice had no delta")
        text = delta.get("content") or ""
        if not isinstance(text, str):
            raise ShapeError("a chunk's content was not text")
        index = raw.get("index")
        out.append((index if isinstance(index, int) else i, text, _opt_str(raw, "finish_reason")))
    return out


def parse_models(data: Any, kind: ModelKind, provider: str) -> list[ModelInfo]:
    """OpenAI `{data: [{id, owned_by}]}`, or a bare list of names/objects, or `{models: [...]}`."""
    items: Any = data
    if isinstance(data, Mapping):
        items = data.get("data", data.get("models"))
    if not isinstance(items, list):
        raise ShapeError("the model list was not a list")
    models = []
    for item in items:
        if isinstance(item, str) and item.strip():
            models.append(ModelInfo(id=item.strip(), kind=kind, provider=provider))
        elif isinstance(item, Mapping):
            model_id = item.get("id") or item.get("name")
            if isinstance(model_id, str) and model_id.strip():
                models.append(ModelInfo(model_id.strip(), kind, provider, _opt_str(item, "owned_by")))
    if items and not models:
        raise ShapeError("the model list held no model names")
    return models


def parse_image_set(data: Any, provider: str, model: str | None) -> ImageSet:
    data = _obj(data, "the image response")
    error = gateway_error(data) if "data" not in data else None
    if error:
        raise ShapeError(error)
    items = data.get("data")
    if not isinstance(items, list) or not items:
        raise ShapeError("the image response had no images")
    images = []
    for item in items:
        item = _obj(item, "an image entry")
        url = _opt_str(item, "url")
        encoded = _opt_str(item, "b64_json")
        payload = None
        if encoded is not None:
            try:
                payload = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ShapeError("an image's base64 data was corrupt") from None
            if not payload:
                raise ShapeError("an image's base64 data was empty")
        elif not url or not url.startswith(("http://", "https://")):
            raise ShapeError("an image entry had neither a URL nor base64 data")
        images.append(GeneratedImage(url=url, data=payload, revised_prompt=_opt_str(item, "revised_prompt")))
    return ImageSet(images=tuple(images), provider=provider, model=model)


def parse_vision_text(body: bytes, content_type: str) -> str:
    """airforce/anyai vision answers "a string": plain text, a JSON string, or a JSON object."""
    if looks_like_html(body, content_type):
        raise ShapeError("answered with an HTML page instead of a description")
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in content_type.lower() or text.startswith(('"', "{")):
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        if isinstance(data, Mapping):
            error = gateway_error(data)
            if error:
                raise ShapeError(error)
            data = data.get("description") or data.get("text") or data.get("content") or data.get("message")
        if not isinstance(data, str):
            raise ShapeError("the vision answer was not text")
        text = data.strip()
    if not text:
        raise ShapeError("the vision answer was empty")
    return text


def parse_suno_job(data: Any, provider: str) -> SunoJob:
    data = _obj(data, "the song response")
    clips = data.get("clips")
    if data.get("status") != "success" or not isinstance(clips, list) or not clips:
        raise ShapeError(
            f"the song request did not succeed ({short(data.get('status') or data.get('error'))})"
        )
    if not all(isinstance(c, str) and c for c in clips):
        raise ShapeError("the song response held a clip id that is not text")
    return SunoJob(clip_ids=tuple(clips), provider=provider)


def parse_suno_clip(data: Any, clip_id: str, provider: str) -> SunoClip:
    data = _obj(data, "the song status")
    status = data.get("status")
    if not isinstance(status, str) or not status:
        raise ShapeError("the song status had no status")
    clip = SunoClip(
        clip_id=clip_id,
        status=status,
        provider=provider,
        audio_url=_opt_str(data, "audio_url"),
        image_url=_opt_str(data, "image_url"),
        video_url=_opt_str(data, "video_url"),
    )
    if clip.finished and not clip.audio_url:
        raise ShapeError("the song was finished but had no audio URL")
    return clip


def parse_key_usage(data: Any, provider: str) -> KeyUsage:
    data = _obj(data, "the key usage")
    values: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif (
            isinstance(value, str | int | float | bool)
            and len(values) < 200
            and prefix.lower() not in ("key", "api_key", "apikey", "token")
        ):
            values[prefix] = value

    walk("", data)
    plan = data.get("plan") or data.get("tier")
    return KeyUsage(provider=provider, plan=plan if isinstance(plan, str) else None, values=values)


def parse_send_data(data: Any, provider: str) -> SendDataResult:
    if not isinstance(data, Mapping):
        raise ShapeError("the send-data answer was not a JSON object")
    if data.get("success") is False or data.get("ok") is False or "error" in data:
        raise ShapeError(f"the message was not sent ({short(data.get('error') or data.get('message'))})")
    message_id = data.get("messageId") or data.get("message_id") or data.get("id")
    return SendDataResult(provider=provider, message_id=str(message_id) if message_id is not None else None)
