"""The Discord side of song jobs: edit the status message, find a delivered clip, post a finished one.

Every write goes through the bot's write budget. While the interaction token is valid the bot writes
through the interaction's webhook; once it has expired (15 minutes), it edits the status message in the
channel and posts the clip as a channel message replying to it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from yarl import URL

from bot.discordkit.write_budget import Priority
from bot.services.fetcher import ADDRESS_REFUSED, Allowlist, FetchRefused, is_public, literal_address
from bot.services.song_jobs import SongJob
from cogs.songs.render import finished_embed, status_embed
from cogs.songs.views import cancel_view

if TYPE_CHECKING:
    from bot.app import Concord

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Room for the multipart envelope and the JSON payload next to the file.
UPLOAD_MARGIN = 64 * 1024
HISTORY_LOOKBACK = 100


def _now() -> datetime:
    return datetime.now(UTC)


class DiscordSongDelivery:
    """Implements `SongDelivery` for the runner, on behalf of the songs cog."""

    def __init__(self, bot: Concord, *, clock: Callable[[], datetime] = _now) -> None:
        self.bot = bot
        self._clock = clock
        self._allowlist = Allowlist.parse(bot.settings.fetch_allowlist)

    def safe_link(self, url: object) -> str | None:
        """`url` if it is an http(s) link that does not name a private address outright, else None:
        links the service gives are shown, never to an internal host."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return None
        try:
            parsed = URL(url)
            host, port = parsed.host or "", parsed.port or 0
            address = literal_address(host)
        except (ValueError, FetchRefused):
            return None
        if not host or (
            address is not None and not (is_public(address) or self._allowlist.allows(host, port, address))
        ):
            return None
        return url

    # --- where to write ---------------------------------------------------------------------------

    def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.bot.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.bot.get_partial_messageable(channel_id)

    def _webhook(self, job: SongJob) -> discord.Webhook | None:
        if not job.token_valid(self._clock()) or self.bot.application_id is None:
            return None
        assert job.interaction_token is not None
        return discord.Webhook.partial(self.bot.application_id, job.interaction_token, client=self.bot)

    def upload_limit(self, job: SongJob) -> int:
        guild = self.bot.get_guild(job.guild_id) if job.guild_id else None
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        return max(1, limit - UPLOAD_MARGIN)

    # --- SongDelivery -----------------------------------------------------------------------------

    async def show_progress(self, group: Sequence[SongJob]) -> None:
        first = group[0]
        message_id = first.status_message_id
        if message_id is None:
            return  # the request's answer was never recorded (the bot died right after the POST)
        embed = status_embed(group, self._clock())
        active = any(job.active for job in group)
        view = cancel_view(first.user_id, first.group_id) if active else None
        webhook = self._webhook(first)

        async def edit() -> None:
            if webhook is not None:
                try:
                    await webhook.edit_message(message_id, embed=embed, view=view, allowed_mentions=NO_PINGS)
                    return
                except discord.NotFound:
                    pass  # the token expired early (Discord's clock, not ours): use the channel
            message = self._channel(first.channel_id).get_partial_message(message_id)  # type: ignore[attr-defined]
            await message.edit(embed=embed, view=view, allowed_mentions=NO_PINGS)

        # Queued, not awaited: the runner goes on polling while the edit waits for the channel's budget,
        # and a newer state queued before this one went out replaces it (same key).
        self.bot.write_budget.submit(
            first.channel_id,
            edit,
            priority=Priority.PROGRESS if active else Priority.FINAL,
            key=("song-status", first.group_id),
        )

    async def find_delivered(self, job: SongJob) -> int | None:
        me = self.bot.user
        channel = self._channel(job.channel_id)
        after = discord.Object(job.status_message_id) if job.status_message_id else None
        history = channel.history(limit=HISTORY_LOOKBACK, after=after, oldest_first=True)
        async for message in history:
            if me is not None and message.author.id != me.id:
                continue
            if any(embed.footer.text == job.marker for embed in message.embeds):
                log.info("Song job %s was already delivered as message %s", job.id, message.id)
                return int(message.id)
        return None

    async def deliver(self, job: SongJob) -> int:
        audio, note, link = await self._audio(job)
        embed = finished_embed(
            job,
            audio_note=note,
            audio_link=self.safe_link(link),
            image_url=self.safe_link(job.result.get("image_url")),
            video_url=self.safe_link(job.result.get("video_url")),
        )
        webhook = self._webhook(job)
        channel = self._channel(job.channel_id)

        def files() -> list[discord.File]:
            # A fresh File per attempt: discord.py closes the ones it sent.
            return [discord.File(io.BytesIO(audio[0]), filename=audio[1])] if audio else []

        async def send() -> Any:
            if webhook is not None:
                try:
                    return await webhook.send(
                        embed=embed, files=files(), allowed_mentions=NO_PINGS, wait=True
                    )
                except discord.NotFound:
                    pass  # the token expired early: post in the channel instead
            kwargs: dict[str, Any] = {"embed": embed, "files": files(), "allowed_mentions": NO_PINGS}
            if job.status_message_id:
                kwargs["reference"] = discord.MessageReference(
                    message_id=job.status_message_id, channel_id=job.channel_id, fail_if_not_exists=False
                )
                kwargs["mention_author"] = False
            return await channel.send(**kwargs)

        message = await self.bot.write_budget.write(job.channel_id, send, priority=Priority.FINAL)
        return int(message.id)

    async def _audio(self, job: SongJob) -> tuple[tuple[bytes, str] | None, str | None, str | None]:
        """The clip's audio to attach when it fits the upload limit; else a link, or why not."""
        url = job.result.get("audio_url")
        if not isinstance(url, str) or not url:
            return None, "The song service gave no audio link.", None
        try:
            fetched = await self.bot.fetcher.fetch(
                url, max_bytes=self.upload_limit(job), expect="audio", filename=f"song-{job.clip_id[:8]}.mp3"
            )
        except FetchRefused as exc:
            if exc.user_message == ADDRESS_REFUSED:
                return None, "The audio link points to a private network address, so it was not used.", None
            if exc.user_message.startswith("That file is larger than"):
                return None, None, url
            return None, f"The audio could not be attached: {exc.user_message}", None
        return (fetched.data, fetched.filename), None, None
