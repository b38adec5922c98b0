"""Discord's payload limits (messages, embeds, components, modals, choices, commands) and error shapes."""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, empty_message, field_error, invalid_form_body, merge

Json = dict[str, Any]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_WIDTH = 5
MAX_CUSTOM_ID = 100
MAX_CHOICES = 25
IS_COMPONENTS_V2 = 1 << 15

EMBED_FIELD_LIMITS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("title",), 256),
    (("description",), 4096),
    (("footer", "text"), 2048),
    (("author", "name"), 256),
)

COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")


def _too_long(path: list[str | int], limit: int) -> Json:
    return field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _required(path: list[str | int]) -> Json:
    return field_error(path, "BASE_TYPE_REQUIRED", "This field is required")


def _dig(obj: Json, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)  # type: ignore[assignment]
    return obj


def embed_errors(embeds: list[Json]) -> Json:
    errors: Json = {}
    if len(embeds) > MAX_EMBEDS:
        return _too_long(["embeds"], MAX_EMBEDS)
    total = 0
    for i, embed in enumerate(embeds):
        for keys, limit in EMBED_FIELD_LIMITS:
            value = _dig(embed, keys)
            if isinstance(value, str):
                total += len(value)
                if len(value) > limit:
                    merge(errors, _too_long(["embeds", i, *keys], limit))
        fields = embed.get("fields") or []
        if len(fields) > 25:
            merge(errors, _too_long(["embeds", i, "fields"], 25))
        for j, fld in enumerate(fields):
            name, value = str(fld.get("name") or ""), str(fld.get("value") or "")
            total += len(name) + len(value)
            if not name:
                merge(errors, _required(["embeds", i, "fields", j, "name"]))
            if not value:
                merge(errors, _required(["embeds", i, "fields", j, "value"]))
            if len(name) > 256:
                merge(errors, _too_long(["embeds", i, "fields", j, "name"], 256))
            if len(value) > 1024:
                merge(errors, _too_long(["embeds", i, "fields", j, "value"], 1024))
    if total > MAX_EMBED_TOTAL and not errors:
        errors = field_error(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    return errors


def _component_errors(component: Json, path: list[str | int], seen: set[str]) -> Json:
    errors: Json = {}
    custom_id = component.get("custom_id")
    if custom_id is not None:
        if len(custom_id) > MAX_CUSTOM_ID:
            merge(errors, _too_long([*path, "custom_id"], MAX_CUSTOM_ID))
        if custom_id in seen:
            merge(
                errors,
                field_error(
                    [*path, "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                ),
            )
        seen.add(custom_id)
    kind = component.get("type")
    if kind == 2:
        if len(component.get("label") or "") > 80:
            merge(errors, _too_long([*path, "label"], 80))
        if component.get("style") == 5:
            if not component.get("url"):
                merge(errors, _required([*path, "url"]))
        elif component.get("style") != 6 and custom_id is None:
            merge(errors, _required([*path, "custom_id"]))
    if kind in (3, 5, 6, 7, 8) and len(component.get("options") or []) > 25:
        merge(errors, _too_long([*path, "options"], 25))
    children = component.get("components") or []
    for i, child in enumerate(children):
        merge(errors, _component_errors(child, [*path, "components", i], seen))
    for key in ("accessory", "component"):
        if isinstance(component.get(key), dict):
            merge(errors, _component_errors(component[key], [*path, key], seen))
    return errors


def component_errors(components: list[Json], flags: int) -> Json:
    errors: Json = {}
    seen: set[str] = set()
    if not flags & IS_COMPONENTS_V2:
        if len(components) > MAX_ACTION_ROWS:
            return _too_long(["components"], MAX_ACTION_ROWS)
        for i, row in enumerate(components):
            if row.get("type") != 1:
                merge(
                    errors,
                    field_error(
                        ["components", i, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be 1.'
                    ),
                )
                continue
            children = row.get("components") or []
            width = sum(1 if c.get("type") == 2 else MAX_ROW_WIDTH for c in children)
            if width > MAX_ROW_WIDTH or not children:
                merge(
                    errors,
                    field_error(
                        ["components", i, "components"],
                        "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {MAX_ROW_WIDTH} in length.",
                    ),
                )
    for i, component in enumerate(components):
        merge(errors, _component_errors(component, ["components", i], seen))
    return errors


def check_message(payload: Json, *, file_sizes: list[int], upload_limit: int, is_edit: bool) -> None:
    """Reject a message body the way Discord would (content, embeds, components, files, emptiness)."""
    for size in file_sizes:
        if size > upload_limit:
            raise ApiError(413, 40005, "Request entity too large")
    errors: Json = {}
    content = payload.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        merge(errors, _too_long(["content"], MAX_CONTENT))
    embeds = payload.get("embeds") or []
    merge(errors, embed_errors(embeds))
    flags = int(payload.get("flags") or 0)
    components = payload.get("components") or []
    merge(errors, component_errors(components, flags))
    if flags & IS_COMPONENTS_V2 and (content or embeds):
        merge(
            errors,
            field_error(
                ["content"],
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
            ),
        )
    if len(file_sizes) > MAX_FILES:
        merge(errors, _too_long(["attachments"], MAX_FILES))
    if errors:
        raise invalid_form_body(errors)
    if not is_edit and not (
        content or embeds or components or file_sizes or payload.get("sticker_ids") or payload.get("poll")
    ):
        raise empty_message()


def check_not_empty(message: Json) -> None:
    """An edit may not leave a message with nothing in it."""
    if not (message.get("content") or message.get("embeds") or message.get("attachments")) and not (
        message.get("components") or message.get("sticker_items") or message.get("poll")
    ):
        raise empty_message()


def check_choices(choices: list[Json]) -> None:
    errors: Json = {}
    if len(choices) > MAX_CHOICES:
        raise invalid_form_body(_too_long(["data", "choices"], MAX_CHOICES))
    for i, choice in enumerate(choices):
        name = str(choice.get("name") or "")
        if not 1 <= len(name) <= 100:
            merge(
                errors,
                field_error(
                    ["data", "choices", i, "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                ),
            )
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            merge(errors, _too_long(["data", "choices", i, "value"], 100))
    if errors:
        raise invalid_form_body(errors)


def check_modal(modal: Json) -> None:
    errors: Json = {}
    title = str(modal.get("title") or "")
    if not title:
        merge(errors, _required(["data", "title"]))
    if len(title) > 45:
        merge(errors, _too_long(["data", "title"], 45))
    custom_id = str(modal.get("custom_id") or "")
    if not custom_id:
        merge(errors, _required(["data", "custom_id"]))
    if len(custom_id) > MAX_CUSTOM_ID:
        merge(errors, _too_long(["data", "custom_id"], MAX_CUSTOM_ID))
    components = modal.get("components") or []
    if not 1 <= len(components) <= 5:
        merge(
            errors,
            field_error(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."),
        )
    for i, text_input in enumerate(iter_modal_inputs(components)):
        path: list[str | int] = ["data", "components", i]
        if len(text_input.get("label") or "") > 45:
            merge(errors, _too_long([*path, "label"], 45))
        if len(text_input.get("placeholder") or "") > 100:
            merge(errors, _too_long([*path, "placeholder"], 100))
        if len(text_input.get("value") or "") > 4000:
            merge(errors, _too_long([*path, "value"], 4000))
        if len(text_input.get("custom_id") or "") > MAX_CUSTOM_ID:
            merge(errors, _too_long([*path, "custom_id"], MAX_CUSTOM_ID))
    if errors:
        raise invalid_form_body(errors)


def iter_modal_inputs(components: list[Json]) -> list[Json]:
    """The interactive children of a modal, whether wrapped in action rows (type 1) or labels (type 18)."""
    found: list[Json] = []
    for component in components:
        if component.get("type") == 1:
            found.extend(iter_modal_inputs(component.get("components") or []))
        elif component.get("type") == 18 and isinstance(component.get("component"), dict):
            found.extend(iter_modal_inputs([component["component"]]))
        elif component.get("custom_id") is not None:
            found.append(component)
    return found


def _option_errors(options: list[Json], path: list[str | int]) -> Json:
    errors: Json = {}
    if len(options) > 25:
        return _too_long([*path, "options"], 25)
    seen_optional = False
    for i, option in enumerate(options):
        opath = [*path, "options", i]
        name = str(option.get("name") or "")
        if not COMMAND_NAME.match(name) or name != name.lower():
            merge(
                errors,
                field_error([*opath, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"),
            )
        if not 1 <= len(str(option.get("description") or "")) <= 100:
            merge(
                errors,
                field_error(
                    [*opath, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                ),
            )
        if len(option.get("choices") or []) > MAX_CHOICES:
            merge(errors, _too_long([*opath, "choices"], MAX_CHOICES))
        if option.get("type") in (1, 2):
            merge(errors, _option_errors(option.get("options") or [], opath))
        elif option.get("required"):
            if seen_optional:
                merge(
                    errors,
                    field_error(
                        [*opath, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    ),
                )
        else:
            seen_optional = True
    return errors


def check_commands(commands: list[Json]) -> None:
    """Validate a bulk-overwrite body as Discord does before storing it."""
    errors: Json = {}
    if len([c for c in commands if c.get("type", 1) == 1]) > 100:
        raise invalid_form_body(_too_long([], 100))
    names: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        name = str(command.get("name") or "")
        kind = int(command.get("type", 1))
        if kind == 1:
            if not COMMAND_NAME.match(name) or name != name.lower():
                merge(
                    errors,
                    field_error([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"),
                )
            if not 1 <= len(str(command.get("description") or "")) <= 100:
                merge(
                    errors,
                    field_error(
                        [i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                    ),
                )
            merge(errors, _option_errors(command.get("options") or [], [i]))
        if (kind, name) in names:
            merge(
                errors,
                field_error(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                ),
            )
        names.add((kind, name))
    if errors:
        raise invalid_form_body(errors)
