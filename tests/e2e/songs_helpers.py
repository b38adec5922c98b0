"""Helpers shared by the /suno end-to-end tests: settings, and reading status and delivered messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.app import Concord
from bot.config import Settings
from bot.store.models import Job
from tests.e2e.harness import World, emulator_settings, sqlite_url, write_providers_file
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

Json = dict[str, Any]
CANCEL = "concord:suno:cancel:"
MARKER = "song job "


def song_settings(emu: DiscordEmulator, gateway: GatewayEmulator, folder: Path, **overrides: Any) -> Settings:
    providers = write_providers_file(
        folder, [gateway], name="air", first_byte_timeout=5, idle_timeout=5, retries=0
    )
    values: dict[str, Any] = {
        "providers_file": providers,
        "fetch_allowlist": ["127.0.0.1"],
        "song_poll_first": 0.1,
        "song_poll_max": 0.3,
        "song_lease": 5,
    }
    values.update(overrides)
    return emulator_settings(emu, sqlite_url(folder), **values)


def embed_text(message: Json | None) -> str:
    if message is None:
        return ""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds", []):
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(parts)


def deliveries(emu: DiscordEmulator, world: World) -> list[Json]:
    """The bot's messages in #general that deliver a clip (they carry a job marker)."""
    return [
        m
        for m in emu.messages(world.general)
        if m["_author_id"] == emu.bot_user.id
        and any(((e.get("footer") or {}).get("text") or "").startswith(MARKER) for e in m.get("embeds", []))
    ]


def marker_of(message: Json) -> str:
    return str(message["embeds"][0]["footer"]["text"])


async def job_rows(bot: Concord) -> list[Job]:
    async with bot.db_sessions() as session:
        return list(await session.scalars(select(Job).order_by(Job.created_at, Job.id)))


async def suno(
    emu: DiscordEmulator, world: World, prompt: str = "A song about the sea", **options: Any
) -> Any:
    itx = await emu.run_command(
        world.member, "suno create", {"prompt": prompt, **options}, channel=world.general
    )
    await itx.wait_for_response(timeout=5)
    return itx
