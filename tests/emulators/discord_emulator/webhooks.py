"""REST routes for answering interactions: the initial callback, followups and @original edits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors as err
from . import limits
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Interaction,
    interaction_metadata,
)
from .messages import EPHEMERAL, LOADING, SETTABLE_FLAGS, build_message, compute_pings, wire
from .models import Json
from .rest import check_payload, dispatch_delete, dispatch_message, edit_message, host_uploads
from .router import ApiRequest, Reply, Router, UploadedFile

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

# Which callback types each interaction type may answer with.
ALLOWED_RESPONSES: dict[int, set[int]] = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
        MODAL,
    },
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE},
}


def interaction_message(
    emu: DiscordEmulator, itx: Interaction, data: Json, files: list[UploadedFile], *, flags: int
) -> Json:
    """A message posted through the interaction webhook (response or followup)."""
    channel = itx.channel
    content = data.get("content") or ""
    pings = compute_pings(
        emu.world,
        channel,
        emu.bot_user,
        content,
        allowed_mentions=data.get("allowed_mentions"),
        replied_author=None,
    )
    return build_message(
        emu.world,
        channel,
        emu.bot_user,
        content=content,
        embeds=data.get("embeds"),
        components=data.get("components"),
        attachments=host_uploads(emu, channel, data, files),
        flags=flags,
        pings=pings,
        webhook_id=emu.application_id,
        interaction_metadata=interaction_metadata(itx),
        tts=bool(data.get("tts")),
    )


def post(emu: DiscordEmulator, itx: Interaction, message: Json) -> Json:
    emu.world.store(message)
    dispatch_message(emu, "MESSAGE_CREATE", message)
    return message


async def callback(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    itx = emu._interactions.get(req.id("interaction_id"))
    if itx is None or itx.token != req.params["token"] or itx.callback_too_late():
        raise err.unknown("interaction", err.UNKNOWN_INTERACTION)
    if itx.responded:
        raise err.already_acknowledged()
    body = req.body
    kind = body.get("type")
    data: Json = body.get("data") or {}
    if kind not in ALLOWED_RESPONSES.get(itx.type, set()):
        raise err.invalid_form_body(
            err.field_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid"
            )
        )
    flags = int(data.get("flags") or 0)
    resource: Json = {"type": kind}
    summary: Json = {"id": str(itx.id), "type": itx.type}

    if kind == CHANNEL_MESSAGE:
        check_payload(itx.channel, data, req.files, is_edit=False)
        message = interaction_message(emu, itx, data, req.files, flags=flags & (SETTABLE_FLAGS | EPHEMERAL))
        itx.original_id = int(message["id"])
        post(emu, itx, message)
        resource["message"] = wire(message)
    elif kind == DEFERRED_CHANNEL_MESSAGE:
        # The user sees "Bot is thinking…": a real, empty, loading message.
        message = interaction_message(emu, itx, {}, [], flags=LOADING | (flags & EPHEMERAL))
        itx.original_id = int(message["id"])
        post(emu, itx, message)
        resource["message"] = wire(message)
        summary["response_message_loading"] = True
    elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
        if itx.source_message_id is None:
            raise err.invalid_form_body(
                err.field_error(
                    ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction has no message to update"
                )
            )
        itx.original_id = itx.source_message_id
        if kind == UPDATE_MESSAGE:
            source = itx.original
            if source is None:
                raise err.unknown("Message", err.UNKNOWN_MESSAGE)
            resource["message"] = wire(edit_message(emu, itx.channel, source, data, req.files))
    elif kind == AUTOCOMPLETE_RESULT:
        choices = data.get("choices") or []
        limits.check_choices(choices)
        itx.choices = choices
    elif kind == MODAL:
        limits.check_modal(data)
        itx.modal = data

    if "message" in resource:
        summary["response_message_id"] = resource["message"]["id"]
        summary["response_message_ephemeral"] = bool(resource["message"]["flags"] & EPHEMERAL)
    itx.response_type = kind
    itx.ephemeral = bool(flags & EPHEMERAL) if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE) else False
    itx.callback_body = body
    itx.notify()
    if req.query.get("with_response") in ("1", "true", "True"):
        return Reply(200, {"interaction": summary, "resource": resource})
    return Reply(204)


def webhook_interaction(emu: DiscordEmulator, req: ApiRequest) -> Interaction:
    """The interaction behind an app-id/token webhook, while its token is valid."""
    itx = emu._interactions_by_token.get(req.params["token"])
    if itx is None or req.params["app_id"] != str(emu.application_id) or not itx.token_valid():
        raise err.unknown("Webhook", err.UNKNOWN_WEBHOOK)
    return itx


def webhook_message(emu: DiscordEmulator, itx: Interaction, message_ref: str) -> Json:
    if message_ref == "@original":
        message = itx.original
    else:
        wanted = int(message_ref)
        known = wanted == itx.original_id or wanted in itx.followup_ids
        message = emu.world.find(itx.channel.id, wanted, ephemeral=True) if known else None
    if message is None:
        raise err.unknown("Message", err.UNKNOWN_MESSAGE)
    return message


async def create_followup(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    itx = webhook_interaction(emu, req)
    if not itx.responded:
        raise err.unknown("Webhook", err.UNKNOWN_WEBHOOK)
    data = req.body
    original = itx.original
    if itx.response_type == DEFERRED_CHANNEL_MESSAGE and original is not None and original["flags"] & LOADING:
        # The first followup after a defer replaces the "thinking" message and keeps its visibility.
        message = edit_message(emu, itx.channel, original, data, req.files)
    else:
        check_payload(itx.channel, data, req.files, is_edit=False)
        flags = int(data.get("flags") or 0) & (SETTABLE_FLAGS | EPHEMERAL)
        message = post(emu, itx, interaction_message(emu, itx, data, req.files, flags=flags))
    itx.followup_ids.append(int(message["id"]))
    itx.notify()
    if req.query.get("wait") in ("true", "True", "1"):
        return Reply(200, wire(message))
    return Reply(204)


async def get_webhook_message(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    itx = webhook_interaction(emu, req)
    return Reply(200, wire(webhook_message(emu, itx, req.params["message_id"])))


async def edit_webhook_message(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    itx = webhook_interaction(emu, req)
    message = webhook_message(emu, itx, req.params["message_id"])
    edited = edit_message(emu, itx.channel, message, req.body, req.files)
    itx.notify()
    return Reply(200, wire(edited))


async def delete_webhook_message(emu: DiscordEmulator, req: ApiRequest) -> Reply:
    itx = webhook_interaction(emu, req)
    message = webhook_message(emu, itx, req.params["message_id"])
    dispatch_delete(emu, message)
    itx.notify()
    return Reply(204)


def register(router: Router) -> None:
    # Interaction callbacks carry no bot token and are not rate limited.
    router.add("POST", "/interactions/{interaction_id}/{token}/callback", callback, bucket=None, auth=False)
    hook = "/webhooks/{app_id}/{token}"
    router.add("POST", hook, create_followup, bucket="webhook", major="token", auth=False)
    for method, handler in (
        ("GET", get_webhook_message),
        ("PATCH", edit_webhook_message),
        ("DELETE", delete_webhook_message),
    ):
        router.add(
            method, hook + "/messages/{message_id}", handler, bucket="webhook", major="token", auth=False
        )
