"""The command line as an operator meets it: clear sentences, exit codes, and no tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.emulators.discord_emulator import DiscordEmulator

ROOT = Path(__file__).resolve().parents[1]


def cli_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DISCORD_", "DATABASE_", "PROVIDERS_", "SHARD_", "OWNER_", "DEV_GUILD"))
    }
    environment["PYTHONPATH"] = str(ROOT)
    environment["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    environment.update(extra)
    return environment


async def run_cli(tmp_path: Path, *args: str, **extra: str) -> tuple[int, str, str]:
    # cwd is tmp_path so no developer .env is read.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=cli_environment(tmp_path, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_run_without_token_says_what_to_set(tmp_path: Path) -> None:
    code, stdout, stderr = await run_cli(tmp_path, "run")
    assert code == 2
    assert stderr.strip().startswith("DISCORD_TOKEN is not set: add DISCORD_TOKEN=")
    assert ".env" in stderr
    assert "Traceback" not in stderr + stdout


async def test_invalid_setting_names_the_key(tmp_path: Path) -> None:
    code, _, stderr = await run_cli(tmp_path, "run", DISCORD_TOKEN="x", SHARD_COUNT="lots")
    assert code == 2
    assert "Invalid setting SHARD_COUNT" in stderr
    assert "Traceback" not in stderr


async def test_run_with_a_rejected_token_exits_cleanly(tmp_path: Path) -> None:
    emu = DiscordEmulator()
    await emu.start()
    try:
        code, stdout, stderr = await run_cli(
            tmp_path,
            "run",
            DISCORD_TOKEN="not-the-right-token",
            DISCORD_API_BASE=emu.api_base,
            DISCORD_GATEWAY_URL=emu.gateway_url,
        )
    finally:
        await emu.close()
    assert code == 2
    assert "Discord rejected DISCORD_TOKEN" in stderr
    assert "Traceback" not in stderr + stdout
    assert "not-the-right-token" not in stderr + stdout


async def test_commands_json_prints_the_tree_without_connecting(tmp_path: Path) -> None:
    code, stdout, stderr = await run_cli(tmp_path, "commands", "--json")
    assert code == 0, stderr
    commands = {command["name"]: command for command in json.loads(stdout)}
    assert {"help", "ping"} <= set(commands)
    assert commands["ping"]["description"] == "Show the bot's gateway and database latency."
    assert sorted(commands["ping"]["contexts"]) == [0, 1, 2]
    assert not (tmp_path / "cli.db").exists()  # describing commands touches no database


async def test_migrate_creates_the_database(tmp_path: Path) -> None:
    code, stdout, _ = await run_cli(tmp_path, "migrate")
    assert code == 0
    assert "latest schema" in stdout
    assert (tmp_path / "cli.db").exists()


async def test_doctor_reports_each_check_with_a_fix(tmp_path: Path) -> None:
    emu = DiscordEmulator()
    await emu.start()
    try:
        code, stdout, stderr = await run_cli(
            tmp_path, "doctor", DISCORD_TOKEN=emu.token, DISCORD_API_BASE=emu.api_base
        )
    finally:
        await emu.close()
    assert "Traceback" not in stderr
    rows = {line.split("  ")[0].strip(): line for line in stdout.splitlines()[1:]}
    assert "OK" in rows["Discord token"]
    assert "PROBLEM" in rows["Database"] and "python -m bot migrate" in rows["Database"]
    assert "PROBLEM" in rows["Providers"] and "PROVIDERS_FILE" in rows["Providers"]
    assert {"Settings", "FFmpeg", "Opus"} <= set(rows)
    assert code == 1


async def test_sync_without_token_says_what_to_set(tmp_path: Path) -> None:
    code, _, stderr = await run_cli(tmp_path, "sync")
    assert code == 2
    assert "DISCORD_TOKEN is not set" in stderr
