"""The benchmark world: the loopback emulators in this process, the real bot in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import World, build_world, write_providers_file
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "concord:chat:regen:"
# The free plan's windows (so every turn still counts quota in the database), with caps no run reaches.
GENEROUS = "llm.minute=1000000 llm.day=1000000 closed_llm.hour=1000000 closed_llm.day=1000000"


def is_final(message: dict[str, Any] | None) -> bool:
    """A chat reply is done when its last message offers Regenerate (the Stop button is gone)."""
    rows = (message or {}).get("components") or []
    return any(c.get("custom_id", "").startswith(REGENERATE) for row in rows for c in row["components"])


def bot_env(emu: DiscordEmulator, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of `python -m bot run` against the emulators: only keys the bot documents."""
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        PYTHONPATH=str(ROOT),
        DISCORD_TOKEN=emu.token,
        DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'concord.db'}",
        DISCORD_API_BASE=emu.api_base,
        DISCORD_GATEWAY_URL=emu.gateway_url,
        GUILD_READY_TIMEOUT="0.1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@dataclass
class BotProcess:
    """A running child bot process; `stats()` asks the instrumented one for its counters."""

    process: asyncio.subprocess.Process
    stderr: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, env: dict[str, str], cwd: Path, *, instrumented: bool = True) -> BotProcess:
        module = "bench.botproc" if instrumented else "bot"
        args = [sys.executable, "-m", module] + ([] if instrumented else ["run"])
        process = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        bot = cls(process)
        bot._reader = asyncio.create_task(bot._read_stderr())
        return bot

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def wait_for_log(self, pattern: str, timeout: float = 30) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.stderr):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bot never logged {pattern!r}:\n" + "\n".join(self.stderr[-30:]))
            await asyncio.sleep(0.002)

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        if not line:
            raise RuntimeError("bot process ended:\n" + "\n".join(self.stderr[-30:]))
        return dict(json.loads(line))

    async def stats(self) -> dict[str, Any]:
        return await self.ask("stats")

    def rss_mb(self) -> float:
        return proc_kb(self.process.pid, "VmRSS") / 1024

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()


@dataclass
class IdleCpu:
    """The bot's CPU rate while nothing is asked of it (heartbeats, the song runner's reads), pooled over
    every quiet wait measured: one short window would catch a periodic task or miss it."""

    cpu_s: float = 0.0
    seconds: float = 0.0

    async def measure(self, bot: BotProcess, quiet: Awaitable[Any]) -> None:
        before = (await bot.stats())["cpu_s"]
        started = time.monotonic()
        await quiet
        self.cpu_s += (await bot.stats())["cpu_s"] - before
        self.seconds += time.monotonic() - started

    @property
    def per_s(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0


def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    return 0


@dataclass
class Bench:
    """Emulators, the world, a providers file and the child bot, ready for commands and messages."""

    emu: DiscordEmulator
    gateway: GatewayEmulator
    world: World
    folder: Path
    bot: BotProcess
    channels: list[Any]
    users: list[Any]

    async def command(self, user: Any, name: str, channel: Any, **options: Any) -> Any:
        itx = await self.emu.run_command(user, name, options=options, channel=channel)
        await itx.wait_for_response(timeout=10)
        return itx

    async def chat(self, user: Any, channel: Any, prompt: str, timeout: float = 30) -> Any:  # noqa: ASYNC109
        itx = await self.emu.run_command(user, "chat", {"prompt": prompt}, channel=channel)
        await itx.wait_for(lambda i: is_final(i.original), timeout=timeout)
        return itx


async def wait_until(predicate: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def bench_world(
    folder: Path,
    *,
    channels: int = 5,
    users: int = 20,
    extra_env: dict[str, str] | None = None,
    extra_gateways: Sequence[GatewayEmulator] = (),
) -> AsyncIterator[Bench]:
    """Start both emulators, build a guild with `channels` text channels and `users` members, start the
    instrumented bot (commands synced to the guild), and lift the quota: the operator's global plan is
    `unlimited` and the server's own caps (`/config plan`) are generous, so every turn still counts
    quota in the database. `extra_gateways` (started by the caller) follow the chat gateway."""
    emu = DiscordEmulator()
    await emu.start()
    gateway = GatewayEmulator("openai")
    await gateway.start()
    bot: BotProcess | None = None
    try:
        world = build_world(emu)
        text_channels = [world.general] + [
            world.guild.create_text_channel(f"bench-{i}") for i in range(1, channels)
        ]
        members = [world.member]
        for i in range(1, users):
            user = emu.create_user(f"user{i}")
            world.guild.add_member(user)
            members.append(user)
        providers = write_providers_file(
            folder,
            [gateway, *extra_gateways],
            name=None if extra_gateways else "emu",
            first_byte_timeout=10,
            idle_timeout=10,
            retries=0,
        )
        env = bot_env(
            emu,
            folder,
            PROVIDERS_FILE=str(providers),
            DEV_GUILD_ID=str(world.guild.id),
            QUOTA_DEFAULT_PLAN="unlimited",
            FETCH_ALLOWLIST="127.0.0.1",
        )
        env.update(extra_env or {})
        bot = await BotProcess.spawn(env, folder)
        await emu.wait_until_ready(timeout=30)
        await wait_until(lambda: bool(emu.guild_commands(world.guild)), 30, "command sync")
        bench = Bench(emu, gateway, world, folder, bot, text_channels, members)
        itx = await bench.command(
            world.admin,
            "config plan",
            world.general,
            role=world.guild.everyone,
            plan="custom",
            limits=GENEROUS,
        )
        if itx.original is None or "1000000" not in (itx.original.get("content") or "").replace(",", ""):
            # Not fatal: the figures still come, but a quota may refuse some turns; say so.
            print(f"  note: /config plan answered {itx.original and itx.original.get('content')!r}")
        yield bench
    finally:
        if bot is not None:
            await bot.stop()
        await gateway.close()
        await emu.close()
