"""What song jobs look like in Discord: the status embed, the finished clip's embed, the job list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

from bot.discordkit.embeds import result_embed
from bot.services.song_jobs import CANCELLED, DELIVERING, DONE, FAILED, PENDING, SongJob

SONG_COLOUR = discord.Colour.from_rgb(233, 84, 32)
BAR_CELLS = 10
# Songs usually take a minute or two; the bar fills towards this and waits at 90 % until the song is done.
TYPICAL_SECONDS = 120.0


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def progress_bar(fraction: float) -> str:
    filled = max(0, min(BAR_CELLS, round(fraction * BAR_CELLS)))
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def clip_line(job: SongJob, now: datetime) -> str:
    """One clip's state for the status embed; failures say why."""
    elapsed = (now - job.created_at).total_seconds()
    if job.status == PENDING:
        fraction = min(0.9, elapsed / TYPICAL_SECONDS)
        checks = f"checked {job.attempts}×" if job.attempts else "first check soon"
        line = f"⏳ generating {progress_bar(fraction)} · {checks}"
        if job.error:
            line += f"\n⚠️ {job.error}"
        return line
    if job.status == DELIVERING:
        return f"📤 finished {progress_bar(1.0)} · posting it…"
    if job.status == DONE:
        return f"✅ finished {progress_bar(1.0)} · posted below"
    if job.status == CANCELLED:
        return "⏹️ cancelled: the bot stopped watching this song."
    if job.status == FAILED:
        return f"❌ {job.error or 'The song could not be made.'}"
    return job.status


def status_embed(group: Sequence[SongJob], now: datetime) -> discord.Embed:
    first = group[0]
    started = first.created_at
    active = any(job.active for job in group)
    fields = [(f"Clip {index}", clip_line(job, now), False) for index, job in enumerate(group, start=1)]
    elapsed = (now - started).total_seconds()
    timing = f"started <t:{int(started.timestamp())}:R>"
    if active:
        timing = f"{elapsed_text(elapsed)} so far · {timing}"
    else:
        took = max(job.updated_at for job in group) - started
        timing = f"took {elapsed_text(took.total_seconds())} · {timing}"
    fields.append(("Elapsed", timing, False))
    settings = [f"model `{first.request.get('model', 'chirp-v3-5')}`"]
    if first.request.get("style"):
        settings.append(f"style: {first.request['style']}")
    if first.request.get("instrumental"):
        settings.append("instrumental")
    if first.request.get("custom"):
        settings.append("custom lyrics")
    title = "🎵 Making your song" if active else "🎵 Song request finished"
    return result_embed(
        title=title,
        description=f"**Prompt:** {first.prompt}\n-# {' · '.join(settings)}",
        colour=SONG_COLOUR,
        fields=fields,
        footer=f"Request {first.group_id[:8]} · /suno status lists your songs",
    )


def song_title(job: SongJob) -> str:
    index = int(job.result.get("index", 0)) + 1
    count = int(job.result.get("count", 1))
    words = job.prompt.split("\n", 1)[0].strip()
    base = words if len(words) <= 80 else words[:79] + "…"
    return f"🎶 {base}" + (f" ({index}/{count})" if count > 1 else "")


def finished_embed(
    job: SongJob,
    *,
    audio_note: str | None,
    audio_link: str | None,
    image_url: str | None,
    video_url: str | None,
) -> discord.Embed:
    """The delivered clip. Its footer carries the job's marker, which recovery looks for."""
    fields: list[tuple[str, str, bool]] = []
    if audio_link:
        fields.append(("Audio", f"[Listen]({audio_link})", True))
    if video_url:
        fields.append(("Video", f"[Watch]({video_url})", True))
    if audio_note:
        fields.append(("Note", audio_note, False))
    return result_embed(
        title=song_title(job),
        description=f"Requested by <@{job.user_id}>",
        colour=SONG_COLOUR,
        fields=fields,
        image_url=image_url,
        footer=job.marker,
    )


STATE_WORDS = {
    PENDING: "generating",
    DELIVERING: "posting",
    DONE: "done",
    FAILED: "failed",
    CANCELLED: "cancelled",
}


def group_state(group: Sequence[SongJob]) -> str:
    states = [STATE_WORDS.get(job.status, job.status) for job in group]
    return ", ".join(states)


def jobs_embed(groups: Sequence[Sequence[SongJob]], now: datetime) -> discord.Embed:
    lines = []
    for group in groups:
        first = group[0]
        prompt = first.prompt if len(first.prompt) <= 60 else first.prompt[:59] + "…"
        age = elapsed_text((now - first.created_at).total_seconds())
        where = ""
        if first.status_message_id:
            guild = first.guild_id or "@me"
            url = f"https://discord.com/channels/{guild}/{first.channel_id}/{first.status_message_id}"
            where = f" · [status]({url})"
        lines.append(f"`{first.group_id[:8]}` **{prompt}** — {group_state(group)} · {age} ago{where}")
    return result_embed(
        title="🎵 Your songs",
        description="\n".join(lines) if lines else "You have no song requests.",
        colour=SONG_COLOUR,
        footer="/suno cancel <id> stops watching one that is still generating",
    )
