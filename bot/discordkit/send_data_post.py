"""One send-data post: validate → resolve and check the channel → send through the write budget → audit.

`POST /send-data` and `/embed send` both call `post_send_data`; they differ only in who asks (an API key,
an admin) and in how a refusal is shown (an HTTP status with JSON, an ephemeral sentence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import discord

from bot.discordkit.embeds import message_kwargs
from bot.errors import ConcordError
from bot.services.send_data import SendDataInvalid, SendDataPayload, parse_payload_text

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

PostableChannel = discord.TextChannel | discord.Thread | discord.VoiceChannel


class PostRefused(ConcordError):
    """A post that did not happen: the HTTP status and error code for the endpoint, a sentence for both."""

    def __init__(
        self, status: int, error: str, message: str, *, problems: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.problems = list(problems)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "message": self.user_message}
        if self.problems:
            body["problems"] = [{"field": path, "problem": problem} for path, problem in self.problems]
        return body


@dataclass(frozen=True)
class PostOrigin:
    """Who asks to post, and the one server they may post in."""

    source: Literal["http", "command"]
    guild_id: int
    api_key_id: int | None = None
    actor_id: int | None = None
    remote: str | None = None


def _validate(text: str, channel_id: int | None) -> tuple[SendDataPayload, int]:
    try:
        payload = parse_payload_text(text, require_channel=channel_id is None)
    except SendDataInvalid as exc:
        raise PostRefused(400, exc.code, exc.user_message, problems=exc.problems) from None
    named = payload.channel_snowflake
    if channel_id is not None and named not in (None, channel_id):
        raise PostRefused(
            400,
            "invalid_payload",
            "`channelId` names another channel than the one chosen; leave it out or make them match.",
            problems=[("channelId", "names another channel than the one chosen")],
        )
    target = channel_id if channel_id is not None else named
    assert target is not None
    return payload, target


def _resolve(bot: Concord, origin: PostOrigin, channel_id: int) -> PostableChannel:
    channel = bot.get_channel(channel_id)
    if channel is None:
        raise PostRefused(404, "unknown_channel", "The bot can't see a channel with that id.")
    guild = getattr(channel, "guild", None)
    if guild is None or guild.id != origin.guild_id:
        raise PostRefused(403, "wrong_guild", "A post can only go to a channel of its own server.")
    if not isinstance(channel, PostableChannel):
        raise PostRefused(400, "invalid_payload", "`channelId` is not a channel messages can be posted in.")
    return channel


async def post_send_data(
    bot: Concord, text: str, origin: PostOrigin, *, channel_id: int | None = None
) -> discord.Message:
    """Post the send-data JSON `text` in `channel_id` (or the payload's `channelId`) and audit the outcome.

    Raises PostRefused (already audited) when anything stops the post."""
    target: int | None = channel_id
    try:
        payload, target = _validate(text, channel_id)
        channel = _resolve(bot, origin, target)
        kwargs = message_kwargs(payload)
        try:
            # Through the channel's write budget, like every other write: a post never trips a 429 that
            # would stall a reply being streamed in the same channel.
            message = await bot.write_budget.write(channel.id, lambda: channel.send(**kwargs))
        except discord.Forbidden:
            raise PostRefused(403, "bot_forbidden", f"The bot may not post in {channel.mention}.") from None
        except discord.HTTPException as exc:
            log.warning("send-data post to %s failed: %s %s", channel.id, exc.status, exc.text[:200])
            raise PostRefused(
                502, "discord_error", "Discord refused the message; nothing was posted."
            ) from None
    except PostRefused as refused:
        await _audit(bot, origin, target, refused.status, f"{refused.error}: {refused.user_message}")
        raise
    await _audit(bot, origin, target, 200, "posted", message_id=message.id)
    return message


async def _audit(
    bot: Concord,
    origin: PostOrigin,
    channel_id: int | None,
    status: int,
    detail: str,
    *,
    message_id: int | None = None,
) -> None:
    try:
        await bot.send_audit.record(
            source=origin.source,
            status=status,
            detail=detail,
            api_key_id=origin.api_key_id,
            actor_id=origin.actor_id,
            guild_id=origin.guild_id,
            channel_id=channel_id,
            message_id=message_id,
            remote=origin.remote,
        )
    except Exception:
        log.exception("Could not write the send-data audit row (status %s)", status)
