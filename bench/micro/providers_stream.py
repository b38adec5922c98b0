"""Stream-reading cost of the provider client: chunks/s and client CPU per 200-chunk chat stream.

The gateway emulator runs in a child process, so the CPU figure is the client's own share.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp

from bot.providers import ChatChunk, ChatMessage, ChatRequest, ProviderClient, ProviderConfig
from bot.providers.transport import StreamReader

ROOT = Path(__file__).resolve().parents[2]
REQUEST = ChatRequest(messages=[ChatMessage.user("hello")], model="bench-model")
CHUNKS = 200
STREAMS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
INTERVAL = 0.001  # one chunk per socket read, as a paced model sends them

_SERVER = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.emulators.gateway import GatewayEmulator

async def main():
    emu = GatewayEmulator("openai")
    await emu.start()
    emu.stream_chunks = [f"token{i} " for i in range(int(sys.argv[2]))]
    emu.chunk_interval = float(sys.argv[3])
    print(emu.base_url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def one_stream(client: ProviderClient) -> int:
    chunks = 0
    async for item in client.chat_stream(REQUEST):
        if isinstance(item, ChatChunk):
            chunks += 1
    return chunks


class _Content:
    """A response body that always has the next chunk ready: isolates the cost of the deadline."""

    def __init__(self, chunk: bytes) -> None:
        self._chunk = chunk

    async def readany(self) -> bytes:
        return self._chunk

    def set_exception(self, exc: BaseException) -> None:
        raise AssertionError("no read should time out here")


class _Response:
    def __init__(self) -> None:
        self.content = _Content(b'data: {"choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n')
        self.headers = {"Content-Type": "text/event-stream"}
        self.connection = None


async def deadline_cost(reads: int = 100_000) -> None:
    """Per read: a fresh `asyncio.timeout` (the old way) against the stream's one watchdog timer."""
    content = _Response().content
    start = time.process_time()
    for _ in range(reads):
        async with asyncio.timeout(30):
            await content.readany()
    per_timeout = (time.process_time() - start) / reads * 1e6
    config = ProviderConfig(
        name="bench", profile="openai", base_url="http://127.0.0.1:9", max_json_bytes=512 * 1024 * 1024
    )
    reader = StreamReader(_Response(), config, asyncio.get_running_loop().time())  # type: ignore[arg-type]
    start = time.process_time()
    for _ in range(reads):
        await reader.read()
    per_watchdog = (time.process_time() - start) / reads * 1e6
    reader.close()
    print(
        f"deadline per stream read: asyncio.timeout per read {per_timeout:.2f} µs, "
        f"one watchdog per stream {per_watchdog:.2f} µs "
        f"({(per_timeout - per_watchdog) * CHUNKS / 1000:.3f} ms saved per {CHUNKS}-chunk stream)"
    )


async def main() -> None:
    await deadline_cost()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER, str(ROOT), str(CHUNKS), str(INTERVAL), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        base_url = (await server.stdout.readline()).decode().strip()
        async with aiohttp.ClientSession() as http:
            config = ProviderConfig(name="bench", profile="openai", base_url=base_url)
            client = ProviderClient(http, [config])
            for _ in range(5):  # warm up the pool and the code paths
                await one_stream(client)
            cpu_ms: list[float] = []
            wall_ms: list[float] = []
            total_chunks = 0
            for _ in range(STREAMS):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                total_chunks += await one_stream(client)
                cpu_ms.append((time.process_time() - cpu0) * 1000)
                wall_ms.append((time.perf_counter() - wall0) * 1000)
        assert total_chunks == CHUNKS * STREAMS, total_chunks
        cpu = statistics.median(cpu_ms)
        wall = statistics.median(wall_ms)
        print(
            f"chat stream, {CHUNKS} chunks, {STREAMS} streams: client CPU median {cpu:.2f} ms/stream "
            f"(p90 {sorted(cpu_ms)[int(STREAMS * 0.9)]:.2f}), wall median {wall:.2f} ms, "
            f"{CHUNKS / (cpu / 1000):.0f} chunks per CPU-second, {CHUNKS / (wall / 1000):.0f} chunks/s"
        )
    finally:
        server.terminate()
        await server.wait()


if __name__ == "__main__":
    asyncio.run(main())
