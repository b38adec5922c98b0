"""The command line as an operator meets it: clear sentences, exit codes, and no tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from tests.e2e.harness import write_providers_file
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

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
    # An operator's .env may enable the HTTP endpoint and providers; describing commands starts neither.
    providers_file = tmp_path / "providers.toml"
    providers_file.write_text(
        '[[provider]]\nname = "x"\nprofile = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    code, stdout, stderr = await run_cli(
        tmp_path, "commands", "--json", HTTP_PORT="1", PROVIDERS_FILE=str(providers_file)
    )
    assert code == 0, stderr
    commands = {command["name"]: command for command in json.loads(stdout)}
    assert {"help", "ping"} <= set(commands)
    assert commands["ping"]["description"] == "Show the bot's gateway and database latency."
    assert sorted(commands["ping"]["contexts"]) == [0, 1, 2]
    assert not (tmp_path / "cli.db").exists()  # describing commands touches no database
    assert "Traceback" not in stderr and "HTTP endpoint listening" not in stderr


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
    assert {"Settings", "FFmpeg", "Opus", "PyNaCl", "davey"} <= set(rows)
    assert "OK" in rows["PyNaCl"] and "OK" in rows["davey"]
    assert "MESSAGE_CONTENT_INTENT=true" in rows["TTS reading mode"]
    assert code == 1


async def test_sync_without_token_says_what_to_set(tmp_path: Path) -> None:
    code, _, stderr = await run_cli(tmp_path, "sync")
    assert code == 2
    assert "DISCORD_TOKEN is not set" in stderr


async def test_sync_registers_the_commands(tmp_path: Path) -> None:
    emu = DiscordEmulator()
    await emu.start()
    try:
        code, stdout, stderr = await run_cli(
            tmp_path, "sync", DISCORD_TOKEN=emu.token, DISCORD_API_BASE=emu.api_base
        )
        synced = {command["name"] for command in emu.global_commands}
    finally:
        await emu.close()
    assert code == 0, stderr
    assert stdout.startswith("Synced ") and "globally" in stdout
    assert {"help", "ping"} <= synced


async def test_run_serves_commands_until_interrupted(tmp_path: Path) -> None:
    """`python -m bot run` end to end: migrates, connects, answers /ping, stops cleanly on Ctrl-C."""
    emu = DiscordEmulator()
    await emu.start()
    user = emu.create_user("carol")
    guild = emu.create_guild("Run Guild", owner=user)
    channel = guild.create_text_channel("general")
    guild.add_member(user)
    environment = cli_environment(
        tmp_path,
        DISCORD_TOKEN=emu.token,
        DISCORD_API_BASE=emu.api_base,
        DISCORD_GATEWAY_URL=emu.gateway_url,
        GUILD_READY_TIMEOUT="0.1",
        DEV_GUILD_ID=str(guild.id),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emu.wait_until_ready(timeout=30)
        for _ in range(200):  # the dev-guild sync happens in setup_hook, before READY; wait for it anyway
            if any(command["name"] == "ping" for command in emu.guild_commands(guild)):
                break
            await asyncio.sleep(0.05)
        itx = await emu.run_command(user, "ping", channel=channel)
        await itx.wait_for_response(timeout=10)
        assert itx.original["content"].startswith("Pong!")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        await emu.close()
    assert process.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert (tmp_path / "cli.db").exists()


async def test_doctor_reports_a_reachable_provider(tmp_path: Path) -> None:
    gateway = GatewayEmulator("airforce")
    await gateway.start()
    try:
        providers_file = write_providers_file(tmp_path, [gateway])
        _, stdout, stderr = await run_cli(tmp_path, "doctor", PROVIDERS_FILE=str(providers_file))
    finally:
        await gateway.close()
    assert "Traceback" not in stderr
    [row] = [line for line in stdout.splitlines() if line.startswith("Provider airforce-1")]
    assert "OK" in row and "airforce at http://127.0.0.1" in row and "chat" in row
