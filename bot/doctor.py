"""`python -m bot doctor`: checks configuration, database, voice libraries and providers, with fixes."""

from __future__ import annotations

import asyncio
import ctypes.util
import importlib
import shutil
import subprocess
from dataclasses import dataclass

import aiohttp

from bot.resources import Resources
from bot.store.engine import ping
from bot.store.migrate import current_revision, head_revision


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


async def check_discord(resources: Resources) -> Check:
    token = resources.settings.discord_token
    if token is None or not token.reveal().strip():
        return Check("Discord token", False, "DISCORD_TOKEN is not set.", "Put your bot token in .env.")
    url = resources.settings.discord_api_base.rstrip("/") + "/users/@me"
    headers = {"Authorization": f"Bot {token.reveal().strip()}"}
    try:
        async with resources.http_session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status == 401:
                return Check(
                    "Discord token", False, "Discord rejected the token.", "Reset it in the developer portal."
                )
            if response.status != 200:
                return Check(
                    "Discord token", False, f"Discord answered HTTP {response.status}.", "Retry later."
                )
            user = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(
            "Discord token", False, f"Discord is unreachable ({type(exc).__name__}).", "Check the network."
        )
    return Check("Discord token", True, f"Logs in as {user.get('username', '?')} ({user.get('id', '?')}).")


async def check_database(resources: Resources) -> Check:
    try:
        latency = await ping(resources.db_engine)
        revision = await current_revision(resources.db_engine)
    except Exception as exc:
        return Check("Database", False, f"Cannot connect: {type(exc).__name__}.", "Check DATABASE_URL.")
    head = head_revision()
    if revision != head:
        return Check(
            "Database",
            False,
            f"Schema at {revision or 'empty'}, code expects {head} ({latency:.1f} ms).",
            "Run `python -m bot migrate` (the bot also migrates at start).",
        )
    return Check("Database", True, f"Schema {revision}, {latency:.1f} ms round trip.")


def check_ffmpeg() -> Check:
    path = shutil.which("ffmpeg")
    if path is None:
        return Check("FFmpeg", False, "ffmpeg is not on PATH; /tts cannot play.", "apt-get install ffmpeg")
    try:
        first_line = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return Check("FFmpeg", False, f"{path} does not run.", "Reinstall ffmpeg.")
    return Check("FFmpeg", True, first_line[:60])


def check_opus() -> Check:
    library = ctypes.util.find_library("opus")
    if library is None:
        return Check("Opus", False, "libopus is not installed; /tts cannot play.", "apt-get install libopus0")
    return Check("Opus", True, library)


def check_voice_packages() -> list[Check]:
    """discord.py's voice extra: PyNaCl encrypts voice packets; davey does DAVE (required since 2026)."""
    checks = []
    for module, name in (("nacl", "PyNaCl"), ("davey", "davey")):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            checks.append(
                Check(
                    name,
                    False,
                    f"{name} is not installed; /tts cannot join voice.",
                    "pip install 'discord.py[voice]>=2.7.1'",
                )
            )
            continue
        version = getattr(imported, "__version__", None) or getattr(imported, "DAVE_PROTOCOL_VERSION", "")
        checks.append(Check(name, True, f"installed {version}".strip()))
    return checks


def check_reading_mode(resources: Resources) -> Check:
    """Reading mode reads other people's messages, which Discord sends only with Message Content."""
    if resources.settings.message_content_intent:
        return Check(
            "TTS reading mode", True, "Message Content intent requested: messages can be read aloud."
        )
    return Check(
        "TTS reading mode",
        True,
        "Message Content intent off: /tts reading hears only messages that mention the bot "
        "(set MESSAGE_CONTENT_INTENT=true after enabling the intent in the developer portal).",
    )


async def check_providers(resources: Resources) -> list[Check]:
    if not resources.providers.providers:
        return [
            Check(
                "Providers",
                False,
                "No AI provider is configured.",
                "Set PROVIDERS_FILE (see providers.example.toml).",
            )
        ]
    checks = []
    for health in await resources.providers.health():
        where = f"{health.profile} at {health.base_url}"
        if not health.reachable:
            checks.append(
                Check(f"Provider {health.name}", False, f"{where}: {health.problem}", health.fix or "")
            )
            continue
        default = health.default_model or "none known (the gateway picks)"
        detail = (
            f"{where}: {health.latency_ms:.0f} ms; {', '.join(health.capabilities)}; default model {default}"
        )
        if health.problem:  # reachable, yet something is wrong (a rejected key, an HTML models page)
            checks.append(
                Check(f"Provider {health.name}", False, f"{detail}; {health.problem}", health.fix or "")
            )
        else:
            checks.append(Check(f"Provider {health.name}", True, detail))
    return checks


async def run_checks(resources: Resources) -> list[Check]:
    discord_check, database_check, provider_checks = await asyncio.gather(
        check_discord(resources), check_database(resources), check_providers(resources)
    )
    return [
        Check("Settings", True, "Loaded."),
        discord_check,
        database_check,
        check_ffmpeg(),
        check_opus(),
        *check_voice_packages(),
        check_reading_mode(resources),
        *provider_checks,
    ]


def render(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = [f"{'CHECK'.ljust(width)}  STATUS   DETAIL"]
    for check in checks:
        status = "OK     " if check.ok else "PROBLEM"
        line = f"{check.name.ljust(width)}  {status}  {check.detail}"
        if not check.ok and check.fix:
            line += f"  → fix: {check.fix}"
        lines.append(line)
    return "\n".join(lines)
