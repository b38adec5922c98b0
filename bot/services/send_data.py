"""The send-data message schema (seed 000): validation against Discord's limits, errors naming the field."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import InvalidInput

# Discord's documented limits for a message and its embeds.
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBED_TOTAL_MAX = 6000  # summed over every embed of one message
URL_MAX = 2048
ACTION_ROWS_MAX = 5
BUTTONS_PER_ROW_MAX = 5
BUTTON_LABEL_MAX = 80
COLOR_MAX = 0xFFFFFF
SNOWFLAKE_MAX = 2**63 - 1  # Discord ids are 64-bit; at most 19 digits
JSON_DEPTH_MAX = 32  # the deepest real payload (embeds[].fields[].name) is 4 levels


def _blank_is_none(value: Any) -> Any:
    # The seed's template sends "" for every unused string; those mean "not set".
    return None if isinstance(value, str) and not value.strip() else value


def _check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://", "attachment://")):
        raise ValueError("must be an http(s) URL")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, populate_by_name=True)


class EmbedImage(_Model):
    url: str | None = Field(default=None, max_length=URL_MAX)

    _blank = field_validator("url", mode="before")(_blank_is_none)
    _url = field_validator("url")(_check_url)


class EmbedAuthor(_Model):
    name: str | None = Field(default=None, max_length=AUTHOR_MAX)
    url: str | None = Field(default=None, max_length=URL_MAX)
    icon_url: str | None = Field(default=None, max_length=URL_MAX)

    _blank = field_validator("name", "url", "icon_url", mode="before")(_blank_is_none)
    _url = field_validator("url", "icon_url")(_check_url)


class EmbedFooter(_Model):
    text: str | None = Field(default=None, max_length=FOOTER_MAX)
    icon_url: str | None = Field(default=None, max_length=URL_MAX)

    _blank = field_validator("text", "icon_url", mode="before")(_blank_is_none)
    _url = field_validator("icon_url")(_check_url)


class EmbedFieldSpec(_Model):
    name: str = Field(min_length=1, max_length=FIELD_NAME_MAX)
    value: str = Field(min_length=1, max_length=FIELD_VALUE_MAX)
    inline: bool = False


class EmbedSpec(_Model):
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    url: str | None = Field(default=None, max_length=URL_MAX)
    color: int | None = Field(default=None, ge=0, le=COLOR_MAX)
    image: EmbedImage | None = None
    thumbnail: EmbedImage | None = None
    author: EmbedAuthor | None = None
    footer: EmbedFooter | None = None
    fields: list[EmbedFieldSpec] = Field(default_factory=list, max_length=FIELDS_MAX)

    _blank = field_validator("title", "description", "url", mode="before")(_blank_is_none)
    _url = field_validator("url")(_check_url)

    @field_validator("color", mode="before")
    @classmethod
    def _color(cls, value: Any) -> Any:
        # Accept "#5865F2" as well as 5793266: both appear in hand-written payloads.
        if isinstance(value, str):
            text = value.strip().lstrip("#")
            if not text:
                return None
            try:
                return int(text, 16)
            except ValueError:
                raise ValueError("must be a number from 0 to 16777215 or a hex colour like #5865F2") from None
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _drop_template_fields(cls, value: Any) -> Any:
        # A field whose name and value are both empty is the seed template's placeholder, not a field.
        if isinstance(value, list):
            return [
                item
                for item in value
                if not (
                    isinstance(item, dict)
                    and not str(item.get("name") or "").strip()
                    and not str(item.get("value") or "").strip()
                )
            ]
        return value

    def text_length(self) -> int:
        """Characters Discord counts towards the 6000 limit."""
        total = len(self.title or "") + len(self.description or "")
        total += sum(len(f.name) + len(f.value) for f in self.fields)
        total += len(self.footer.text or "") if self.footer else 0
        total += len(self.author.name or "") if self.author else 0
        return total

    def is_empty(self) -> bool:
        return not (
            self.title
            or self.description
            or self.fields
            or (self.image and self.image.url)
            or (self.thumbnail and self.thumbnail.url)
            or (self.author and self.author.name)
            or (self.footer and self.footer.text)
        )


class ButtonSpec(_Model):
    type: Literal[2] = 2
    style: Literal[5] = 5  # link buttons only: nothing in Concord would answer a press of any other kind
    label: str = Field(min_length=1, max_length=BUTTON_LABEL_MAX)
    url: str = Field(max_length=URL_MAX)

    _url = field_validator("url")(_check_url)

    @field_validator("style", mode="before")
    @classmethod
    def _link_only(cls, value: Any) -> Any:
        if value != 5:
            raise ValueError("only link buttons (style 5) can be sent: nothing would answer other buttons")
        return value


class ActionRowSpec(_Model):
    type: Literal[1] = 1
    components: list[ButtonSpec] = Field(min_length=1, max_length=BUTTONS_PER_ROW_MAX)


class SendDataPayload(_Model):
    """The seed's send-data body: channelId, content, embeds[], components[]."""

    channel_id: str | None = Field(default=None, alias="channelId")
    content: str | None = Field(default=None, max_length=CONTENT_MAX)
    embeds: list[EmbedSpec] = Field(default_factory=list, max_length=EMBEDS_MAX)
    components: list[ActionRowSpec] = Field(default_factory=list, max_length=ACTION_ROWS_MAX)

    _blank = field_validator("content", "channel_id", mode="before")(_blank_is_none)

    @field_validator("channel_id", mode="before")
    @classmethod
    def _snowflake(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            # ASCII digits only: "²".isdigit() is true, and int() of it fails; a 5000-digit id would too.
            if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > SNOWFLAKE_MAX:
                raise ValueError("must be a channel id (up to 19 digits)")
        return value

    @model_validator(mode="after")
    def _whole_message(self) -> SendDataPayload:
        for index, embed in enumerate(self.embeds):
            if embed.is_empty():
                raise _PathError(
                    f"embeds[{index}]", "is empty: give a title, description, fields or an image"
                )
        total = sum(embed.text_length() for embed in self.embeds)
        if total > EMBED_TOTAL_MAX:
            raise _PathError("embeds", f"hold {total} characters in all; at most {EMBED_TOTAL_MAX} allowed")
        if not (self.content or self.embeds):
            raise _PathError("content", "is required when there are no embeds")
        return self

    @property
    def channel_snowflake(self) -> int | None:
        return int(self.channel_id) if self.channel_id else None


class _PathError(ValueError):
    """A whole-message rule broken at a known path; turned into a FieldProblem below."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


class SendDataInvalid(InvalidInput):
    """The payload broke the schema; `.problems` lists (field path, problem); the message names the first.
    `code` is `invalid_json` when the text was not JSON at all, else `invalid_payload`."""

    def __init__(self, problems: list[tuple[str, str]], *, code: str = "invalid_payload") -> None:
        path, problem = problems[0]
        more = (
            f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
            if len(problems) > 1
            else ""
        )
        super().__init__(f"`{path}` {problem}{more}.")
        self.problems = problems
        self.code = code

    def as_json(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "message": self.user_message,
            "problems": [{"field": path, "problem": problem} for path, problem in self.problems],
        }


_ALIASES = {"channel_id": "channelId"}


def field_path(location: tuple[int | str, ...]) -> str:
    """('embeds', 0, 'fields', 3, 'value') -> 'embeds[0].fields[3].value'."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = _ALIASES.get(part, part)
            path += f".{name}" if path else name
    return path or "payload"


def _describe(error: Any) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    given = error.get("input")
    if kind == "string_too_long":
        return f"is {len(given)} characters; at most {context['max_length']} allowed"
    if kind == "too_long":
        return f"has {context.get('actual_length')} items; at most {context['max_length']} allowed"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"needs at least {context['min_length']} item(s)"
    if kind == "missing":
        return "is required"
    if kind in {"less_than_equal", "greater_than_equal"}:
        return "must be a number from 0 to 16777215 (0xFFFFFF)"
    if kind == "value_error":
        return str(context.get("error") or error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"must be {context.get('expected')}"
    return str(error["msg"]).lower()


def parse_payload(data: Any, *, require_channel: bool) -> SendDataPayload:
    """Validate decoded JSON; raises SendDataInvalid naming every field that is wrong."""
    if not isinstance(data, dict):
        raise SendDataInvalid([("payload", "must be a JSON object")])
    try:
        payload = SendDataPayload.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for error in exc.errors():
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, _PathError):
                problems.append((cause.path, cause.problem))
            else:
                problems.append((field_path(tuple(error["loc"])), _describe(error)))
        raise SendDataInvalid(problems) from None
    if require_channel and payload.channel_id is None:
        raise SendDataInvalid([("channelId", "is required")])
    return payload


def json_depth_exceeds(text: str, limit: int = JSON_DEPTH_MAX) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (checked before decoding: 50,000
    nested brackets would exhaust the decoder's recursion)."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_payload_text(text: str, *, require_channel: bool) -> SendDataPayload:
    """Decode JSON text, then validate it; every malformed input is a SendDataInvalid naming the field."""
    if json_depth_exceeds(text):
        raise SendDataInvalid(
            [("payload", f"nests brackets deeper than {JSON_DEPTH_MAX} levels")], code="invalid_json"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SendDataInvalid(
            [("payload", f"is not valid JSON ({exc.msg} at line {exc.lineno})")], code="invalid_json"
        ) from None
    except (ValueError, RecursionError):  # e.g. an integer beyond Python's digit limit
        raise SendDataInvalid([("payload", "is not JSON that can be read")], code="invalid_json") from None
    return parse_payload(data, require_channel=require_channel)
