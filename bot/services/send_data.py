"""The send-data message schema (seed 000): validation against Discord's limits, errors naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bot.coerce import Invalid, blank_to_none, boolean, sized_list, text, whole_number
from bot.errors import InvalidInput

T = TypeVar("T")

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


def _optional_text(max_length: int, *, url: bool = False) -> Callable[[Any], str | None]:
    """A string that may be unset: the seed's template sends "" for every unused one."""

    def read(value: Any) -> str | None:
        if blank_to_none(value) is None:
            return None
        found = text(value, max_length=max_length)
        return _check_url(found) if url else found

    return read


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://", "attachment://")):
        raise Invalid("must be an http(s) URL")
    return value


def _required_text(max_length: int) -> Callable[[Any], str]:
    return lambda value: text(value, min_length=1, max_length=max_length)


def _link(value: Any) -> str:
    return _check_url(text(value, max_length=URL_MAX))


def _exactly(expected: int) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if isinstance(value, str) or value != expected:
            raise Invalid(f"must be {expected}")
        return expected

    return read


def _link_style(value: Any) -> Literal[5]:
    if value != 5:
        raise Invalid("only link buttons (style 5) can be sent: nothing would answer other buttons")
    return 5


def _colour(value: Any) -> int | None:
    # Accept "#5865F2" as well as 5793266: both appear in hand-written payloads.
    if isinstance(value, str):
        digits = value.strip().lstrip("#")
        if not digits:
            return None
        try:
            value = int(digits, 16)
        except ValueError:
            raise Invalid("must be a number from 0 to 16777215 or a hex colour like #5865F2") from None
    if value is None:
        return None
    colour = whole_number(value)
    if not 0 <= colour <= COLOR_MAX:
        raise Invalid("must be a number from 0 to 16777215 (0xFFFFFF)")
    return colour


def _channel_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        return None
    # ASCII digits only: "²".isdigit() is true, and int() of it fails; a 5000-digit id would too.
    digits = value.strip() if isinstance(value, str) else ""
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or int(digits) > SNOWFLAKE_MAX:
        raise Invalid("must be a channel id (up to 19 digits)")
    return digits


def _is_template_field(item: Any) -> bool:
    # A field whose name and value are both empty is the seed template's placeholder, not a field.
    return (
        isinstance(item, dict)
        and not str(item.get("name") or "").strip()
        and not str(item.get("value") or "").strip()
    )


@dataclass(frozen=True)
class EmbedImage:
    url: str | None = None


@dataclass(frozen=True)
class EmbedAuthor:
    name: str | None = None
    url: str | None = None
    icon_url: str | None = None


@dataclass(frozen=True)
class EmbedFooter:
    text: str | None = None
    icon_url: str | None = None


@dataclass(frozen=True)
class EmbedFieldSpec:
    name: str
    value: str
    inline: bool = False


@dataclass(frozen=True)
class EmbedSpec:
    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = None
    image: EmbedImage | None = None
    thumbnail: EmbedImage | None = None
    author: EmbedAuthor | None = None
    footer: EmbedFooter | None = None
    fields: list[EmbedFieldSpec] = field(default_factory=list)

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


@dataclass(frozen=True, kw_only=True)
class ButtonSpec:
    type: Literal[2] = 2
    style: Literal[5] = 5  # link buttons only: nothing in Concord would answer a press of any other kind
    label: str
    url: str


@dataclass(frozen=True, kw_only=True)
class ActionRowSpec:
    type: Literal[1] = 1
    components: list[ButtonSpec]


@dataclass(frozen=True)
class SendDataPayload:
    """The seed's send-data body: channelId, content, embeds[], components[]."""

    channel_id: str | None = None
    content: str | None = None
    embeds: list[EmbedSpec] = field(default_factory=list)
    components: list[ActionRowSpec] = field(default_factory=list)

    @property
    def channel_snowflake(self) -> int | None:
        return int(self.channel_id) if self.channel_id else None


_REQUIRED: Any = object()


class _Reader:
    """Reads one decoded payload into the dataclasses above, noting (field path, problem) for every field
    that is wrong instead of stopping at the first; unknown keys are ignored."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def value(
        self,
        data: dict[str, Any],
        where: str,
        key: str,
        read: Callable[[Any], T],
        default: T,
        *,
        shown: str = "",
    ) -> T:
        """`data[key]` through `read`, or `default` when the key is absent (`_REQUIRED`: a problem); a
        problem is noted at `where.key` (or `shown`, the name the seed gives the key)."""
        where = shown or (f"{where}.{key}" if where else key)
        if key not in data:
            if default is _REQUIRED:
                self.problems.append((where, "is required"))
            return default
        try:
            return read(data[key])
        except Invalid as exc:
            self.problems.append((where, str(exc)))
            return default

    @staticmethod
    def mapping(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid("must be a JSON object")
        return value

    def items(
        self, value: Any, where: str, item: Callable[[Any, str], T], *, max_items: int, min_items: int = 0
    ) -> list[T]:
        found: list[T] = []
        for index, entry in enumerate(sized_list(value, min_items=min_items, max_items=max_items)):
            try:
                found.append(item(entry, f"{where}[{index}]"))
            except Invalid as exc:
                self.problems.append((f"{where}[{index}]", str(exc)))
        return found

    def nested(self, where: str, item: Callable[[Any, str], T]) -> Callable[[Any], T | None]:
        """An optional object field: null means unset."""
        return lambda value: None if value is None else item(value, where)

    def image(self, value: Any, where: str) -> EmbedImage:
        data = self.mapping(value)
        return EmbedImage(url=self.value(data, where, "url", _optional_text(URL_MAX, url=True), None))

    def author(self, value: Any, where: str) -> EmbedAuthor:
        data = self.mapping(value)
        return EmbedAuthor(
            name=self.value(data, where, "name", _optional_text(AUTHOR_MAX), None),
            url=self.value(data, where, "url", _optional_text(URL_MAX, url=True), None),
            icon_url=self.value(data, where, "icon_url", _optional_text(URL_MAX, url=True), None),
        )

    def footer(self, value: Any, where: str) -> EmbedFooter:
        data = self.mapping(value)
        return EmbedFooter(
            text=self.value(data, where, "text", _optional_text(FOOTER_MAX), None),
            icon_url=self.value(data, where, "icon_url", _optional_text(URL_MAX, url=True), None),
        )

    def embed_field(self, value: Any, where: str) -> EmbedFieldSpec:
        data = self.mapping(value)
        return EmbedFieldSpec(
            name=self.value(data, where, "name", _required_text(FIELD_NAME_MAX), _REQUIRED),
            value=self.value(data, where, "value", _required_text(FIELD_VALUE_MAX), _REQUIRED),
            inline=self.value(data, where, "inline", boolean, False),
        )

    def embed_fields(self, value: Any, where: str) -> list[EmbedFieldSpec]:
        if isinstance(value, list):
            value = [item for item in value if not _is_template_field(item)]
        return self.items(value, where, self.embed_field, max_items=FIELDS_MAX)

    def embed(self, value: Any, where: str) -> EmbedSpec:
        data = self.mapping(value)
        return EmbedSpec(
            title=self.value(data, where, "title", _optional_text(TITLE_MAX), None),
            description=self.value(data, where, "description", _optional_text(DESCRIPTION_MAX), None),
            url=self.value(data, where, "url", _optional_text(URL_MAX, url=True), None),
            color=self.value(data, where, "color", _colour, None),
            image=self.value(data, where, "image", self.nested(f"{where}.image", self.image), None),
            thumbnail=self.value(
                data, where, "thumbnail", self.nested(f"{where}.thumbnail", self.image), None
            ),
            author=self.value(data, where, "author", self.nested(f"{where}.author", self.author), None),
            footer=self.value(data, where, "footer", self.nested(f"{where}.footer", self.footer), None),
            fields=self.value(data, where, "fields", lambda v: self.embed_fields(v, f"{where}.fields"), []),
        )

    def button(self, value: Any, where: str) -> ButtonSpec:
        data = self.mapping(value)
        return ButtonSpec(
            type=self.value(data, where, "type", _exactly(2), 2),
            style=self.value(data, where, "style", _link_style, 5),
            label=self.value(data, where, "label", _required_text(BUTTON_LABEL_MAX), _REQUIRED),
            url=self.value(data, where, "url", _link, _REQUIRED),
        )

    def action_row(self, value: Any, where: str) -> ActionRowSpec:
        data = self.mapping(value)
        components = f"{where}.components"
        return ActionRowSpec(
            type=self.value(data, where, "type", _exactly(1), 1),
            components=self.value(
                data,
                where,
                "components",
                lambda v: self.items(v, components, self.button, min_items=1, max_items=BUTTONS_PER_ROW_MAX),
                _REQUIRED,
            ),
        )

    def payload(self, data: dict[str, Any]) -> SendDataPayload:
        # "channelId" is the seed's name; "channel_id" is accepted too, the former winning.
        channel_key = "channelId" if "channelId" in data else "channel_id"
        return SendDataPayload(
            channel_id=self.value(data, "", channel_key, _channel_id, None, shown="channelId"),
            content=self.value(data, "", "content", _optional_text(CONTENT_MAX), None),
            embeds=self.value(
                data,
                "",
                "embeds",
                lambda v: self.items(v, "embeds", self.embed, max_items=EMBEDS_MAX),
                [],
            ),
            components=self.value(
                data,
                "",
                "components",
                lambda v: self.items(v, "components", self.action_row, max_items=ACTION_ROWS_MAX),
                [],
            ),
        )


def _whole_message(payload: SendDataPayload) -> tuple[str, str] | None:
    """The first rule about the message as a whole that `payload` breaks, as (path, problem)."""
    for index, embed in enumerate(payload.embeds):
        if embed.is_empty():
            return f"embeds[{index}]", "is empty: give a title, description, fields or an image"
    total = sum(embed.text_length() for embed in payload.embeds)
    if total > EMBED_TOTAL_MAX:
        return "embeds", f"hold {total} characters in all; at most {EMBED_TOTAL_MAX} allowed"
    if not (payload.content or payload.embeds):
        return "content", "is required when there are no embeds"
    return None


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


def parse_payload(data: Any, *, require_channel: bool) -> SendDataPayload:
    """Validate decoded JSON; raises SendDataInvalid naming every field that is wrong."""
    if not isinstance(data, dict):
        raise SendDataInvalid([("payload", "must be a JSON object")])
    reader = _Reader()
    payload = reader.payload(data)
    if reader.problems:
        raise SendDataInvalid(reader.problems)
    broken = _whole_message(payload)
    if broken is not None:
        raise SendDataInvalid([broken])
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
