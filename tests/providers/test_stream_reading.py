"""How often a streamed answer is read: tokens that arrive within a provider's `stream_read_interval` are
read together, unless the caller says it will use new text sooner (`quiet_for`)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from bot.providers import ChatChunk, ChatMessage, ChatRequest, ProviderClient, StreamEnd
from bot.providers.config import ConfigError, parse_providers
from bot.providers.transport import StreamReader
from tests.providers.conftest import collect, config_for

TOKENS = [f"t{i} " for i in range(20)]
GAP = 0.02  # seconds between two tokens, each in its own packet


def request() -> ChatRequest:
    return ChatRequest(messages=[ChatMessage.user("count")], model="m")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every non-empty read of a stream's body, in order."""
    seen: list[bytes] = []
    original = StreamReader.read

    async def read(self: StreamReader) -> bytes:
        data = await original(self)
        if data:
            seen.append(data)
        return data

    monkeypatch.setattr(StreamReader, "read", read)
    return seen


async def paced_gateway(gateway):  # type: ignore[no-untyped-def]
    emu = await gateway("openai")
    emu.stream_chunks = TOKENS
    emu.chunk_interval = GAP
    return emu


async def test_tokens_that_arrive_within_the_interval_are_read_together(gateway, session, reads):
    emu = await paced_gateway(gateway)
    client = ProviderClient(session, [config_for(emu, stream_read_interval=0.1)])

    items = await collect(client.chat_stream(request()))

    assert "".join(i.text for i in items if isinstance(i, ChatChunk)) == "".join(TOKENS)
    assert isinstance(items[-1], StreamEnd) and items[-1].complete
    # 20 packets over 0.38 s, read at most every 0.1 s: about 5 reads (the first comes alone).
    assert len(reads) <= 8


async def test_a_caller_that_shows_text_at_once_gets_every_packet_as_it_comes(gateway, session, reads):
    emu = await paced_gateway(gateway)
    client = ProviderClient(session, [config_for(emu, stream_read_interval=0.1)])

    await collect(client.chat_stream(request(), quiet_for=lambda: 0.0))

    assert len(reads) >= 12


async def test_an_interval_of_zero_reads_every_packet(gateway, session, reads):
    emu = await paced_gateway(gateway)
    client = ProviderClient(session, [config_for(emu, stream_read_interval=0.0)])

    await collect(client.chat_stream(request()))

    assert len(reads) >= 12


async def test_the_end_of_a_held_stream_is_seen_within_the_interval(gateway, session):
    emu = await paced_gateway(gateway)
    client = ProviderClient(session, [config_for(emu, stream_read_interval=0.1)])
    last_token_at = end_at = 0.0

    async for item in client.chat_stream(request()):
        if isinstance(item, ChatChunk) and item.text.strip() == TOKENS[-1].strip():
            last_token_at = time.monotonic()
        if isinstance(item, StreamEnd):
            end_at = time.monotonic()

    assert last_token_at and end_at - last_token_at < 0.1


async def test_a_connection_left_after_a_held_stream_serves_the_next_request(gateway, reads):
    emu = await paced_gateway(gateway)
    connector = aiohttp.TCPConnector(limit=1)  # one connection: the next stream must reuse it
    async with aiohttp.ClientSession(connector=connector) as http:
        client = ProviderClient(http, [config_for(emu, stream_read_interval=0.1)])
        first = await collect(client.chat_stream(request()))
        emu.chunk_interval = 0.0
        started = time.monotonic()
        second = await collect(client.chat_stream(request()))
        elapsed = time.monotonic() - started

    for items in (first, second):
        assert "".join(i.text for i in items if isinstance(i, ChatChunk)) == "".join(TOKENS)
    assert elapsed < 1.0  # not stalled behind a transport left paused


@pytest.mark.parametrize("value", [0, 0.05, 1])
def test_the_read_interval_is_configurable(value):
    table = {"name": "p", "profile": "openai", "base_url": "http://127.0.0.1:9", "default_model": "m"}
    (config,) = parse_providers({"provider": [{**table, "stream_read_interval": value}]}, {})
    assert config.stream_read_interval == value


@pytest.mark.parametrize("value", [-0.1, 2, "fast", True])
def test_a_bad_read_interval_is_refused_by_name(value):
    table = {"name": "p", "profile": "openai", "base_url": "http://127.0.0.1:9", "default_model": "m"}
    with pytest.raises(ConfigError, match="stream_read_interval"):
        parse_providers({"provider": [{**table, "stream_read_interval": value}]}, {})
