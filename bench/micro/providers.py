"""Provider client figures against the loopback gateway emulator: chat latency, streaming
throughput, failover overhead and SSE decoding speed. Prints one line per figure."""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp

from bot.providers import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ProviderClient,
    ProviderConfig,
    RetryPolicy,
)
from bot.providers.streaming import SSEDecoder
from tests.emulators.gateway import GatewayEmulator, ServerError

REQUEST = ChatRequest(messages=[ChatMessage.user("hello")])


def config(emu: GatewayEmulator, name: str, priority: int, **kw: object) -> ProviderConfig:
    return ProviderConfig(name=name, profile="openai", base_url=emu.base_url, priority=priority, **kw)  # type: ignore[arg-type]


async def timed(coro_factory, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await coro_factory()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def main() -> None:
    # The failover figure provokes a warning per call; they are expected here.
    logging.getLogger("bot.providers").setLevel(logging.ERROR)
    async with (
        aiohttp.ClientSession() as http,
        GatewayEmulator("openai") as first,
        GatewayEmulator("openai") as second,
    ):
        direct = ProviderClient(http, [config(first, "first", 1)])
        await direct.chat(REQUEST)  # warm the connection pool

        samples = await timed(lambda: direct.chat(REQUEST), 300)
        print(f"chat (JSON), sequential: median {statistics.median(samples):.2f} ms, "
              f"p95 {sorted(samples)[int(len(samples) * 0.95)]:.2f} ms")  # fmt: skip

        start = time.perf_counter()
        await asyncio.gather(*(direct.chat(REQUEST) for _ in range(400)))
        elapsed = time.perf_counter() - start
        print(f"chat (JSON), 400 concurrent (8 per provider): {400 / elapsed:.0f} calls/s")

        first.stream_chunks = [f"token{i} " for i in range(5000)]
        start = time.perf_counter()
        chunks = 0
        size = 0
        async for item in direct.chat_stream(REQUEST):
            if isinstance(item, ChatChunk):
                chunks += 1
                size += len(item.text)
        elapsed = time.perf_counter() - start
        print(f"chat stream: {chunks / elapsed:.0f} chunks/s ({chunks} chunks, {size / 1024:.0f} KiB text "
              f"in {elapsed * 1000:.0f} ms)")  # fmt: skip
        first.stream_chunks = None

        failover = ProviderClient(
            http,
            [config(first, "first", 1, retries=0), config(second, "second", 2)],
            policy=RetryPolicy(breaker_threshold=10**9),
        )
        await failover.chat(REQUEST)
        base = await timed(lambda: failover.chat(REQUEST), 200)

        async def failing_then_ok() -> None:
            first.inject("chat", ServerError(503))
            await failover.chat(REQUEST)

        over = await timed(failing_then_ok, 200)
        print(f"failover overhead (503 with HTML, then next provider): "
              f"+{statistics.median(over) - statistics.median(base):.2f} ms median "
              f"({statistics.median(base):.2f} → {statistics.median(over):.2f} ms)")  # fmt: skip

    payload = b"".join(
        b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok "},'
        b'"finish_reason":null}]}\n\n'
        for _ in range(20000)
    )
    decoder = SSEDecoder()
    start = time.perf_counter()
    events = 0
    for i in range(0, len(payload), 4096):
        events += len(decoder.feed(payload[i : i + 4096]))
    elapsed = time.perf_counter() - start
    print(f"SSE decoding: {len(payload) / elapsed / 1e6:.1f} MB/s, {events / elapsed:.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
