"""The send-data HTTP endpoint on a real port: each refusal gets its status and JSON error; posts land."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

import bot.http_api as http_api
from bot.app import Concord
from bot.services.api_keys import ApiKeyService
from bot.store.engine import create_engine, create_sessionmaker
from bot.store.models import SendDataAudit
from tests.e2e.harness import (
    World,
    chat_settings,
    emulator_settings,
    final_from,
    running_bot,
    sqlite_url,
    until,
)
from tests.e2e.test_chat import PacedGateway
from tests.emulators.discord_emulator import DiscordEmulator

RATE_LIMIT = 5


@dataclass
class Endpoint:
    bot: Concord
    base: str
    key: str
    http: aiohttp.ClientSession
    other_channel: Any

    async def post(
        self, body: Any, *, key: str | None = "default", raw: bytes | None = None
    ) -> tuple[int, Any, Any]:
        headers = {"Content-Type": "application/json"}
        secret = self.key if key == "default" else key
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(f"{self.base}/send-data", data=data, headers=headers) as response:
            return response.status, await response.json(), response.headers


@pytest.fixture
async def endpoint(discord_emu: DiscordEmulator, world: World, tmp_path: Path) -> AsyncIterator[Endpoint]:
    other_guild = discord_emu.create_guild("Elsewhere", owner=world.member)
    other_channel = other_guild.create_text_channel("news")
    settings = emulator_settings(
        discord_emu, sqlite_url(tmp_path), http_port=0, http_host="127.0.0.1", send_data_rate_limit=RATE_LIMIT
    )
    async with running_bot(discord_emu, settings) as bot:
        assert bot.http_server is not None
        port = bot.http_server.port
        created = await ApiKeyService(bot.db_sessions).create(world.guild.id, "ci", world.admin.id)
        async with aiohttp.ClientSession() as http:
            yield Endpoint(bot, f"http://127.0.0.1:{port}", created.key, http, other_channel)


def bot_posts(emu: DiscordEmulator, channel: Any) -> list[dict[str, Any]]:
    return [m for m in emu.messages(channel) if m["_author_id"] == emu.bot_user.id]


async def audit(bot: Concord) -> list[tuple[int, str | None]]:
    async with bot.db_sessions() as session:
        rows = await session.scalars(select(SendDataAudit).order_by(SendDataAudit.id))
        return [(r.status, r.detail) for r in rows]


async def test_a_valid_post_arrives_with_its_embeds(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    body = {
        "channelId": str(world.general.id),
        "content": "Hello",
        "embeds": [
            {
                "title": "Title here",
                "description": "From CI",
                "url": "https://example.com",
                "color": 16711680,
                "image": {"url": "https://example.com/a.png"},
                "author": {"name": "Build bot"},
                "footer": {"text": "run 42", "icon_url": ""},
                "fields": [{"name": "Status", "value": "green", "inline": True}],
            }
        ],
        "components": [],
    }
    status, answer, _ = await endpoint.post(body)
    assert status == 200, answer
    assert answer["ok"] is True and answer["channelId"] == str(world.general.id)
    [posted] = bot_posts(discord_emu, world.general)
    assert posted["id"] == answer["id"] and posted["content"] == "Hello"
    [embed] = posted["embeds"]
    assert (embed["title"], embed["description"], embed["color"]) == ("Title here", "From CI", 16711680)
    assert embed["image"]["url"] == "https://example.com/a.png"
    assert embed["author"]["name"] == "Build bot" and embed["footer"]["text"] == "run 42"
    assert embed["fields"] == [{"name": "Status", "value": "green", "inline": True}]
    assert posted["_pinged"]["users"] == [] and not posted["_pinged"]["everyone"]
    assert await audit(endpoint.bot) == [(200, "posted")]


async def test_the_seed_template_with_a_mention_pings_nobody(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    status, _, _ = await endpoint.post(
        {"channelId": str(world.general.id), "content": f"@everyone <@{world.member.id}>"}
    )
    assert status == 200
    [posted] = bot_posts(discord_emu, world.general)
    assert posted["_pinged"] == {"users": [], "roles": [], "everyone": False, "replied_user": False}


@pytest.mark.parametrize(
    ("key", "error"),
    [(None, "unauthorized"), ("cnc_not-a-real-key", "unauthorized"), ("garbage", "unauthorized")],
)
async def test_missing_or_invalid_key_is_401(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint, key: str | None, error: str
) -> None:
    status, answer, headers = await endpoint.post(
        {"channelId": str(world.general.id), "content": "x"}, key=key
    )
    assert (status, answer["error"]) == (401, error)
    assert headers["WWW-Authenticate"] == "Bearer"
    assert bot_posts(discord_emu, world.general) == []
    assert [s for s, _ in await audit(endpoint.bot)] == [401]


async def test_a_revoked_key_is_401(discord_emu: DiscordEmulator, world: World, endpoint: Endpoint) -> None:
    keys = ApiKeyService(endpoint.bot.db_sessions)
    [info] = await keys.list(world.guild.id)
    await keys.revoke(world.guild.id, info.id)
    status, answer, _ = await endpoint.post({"channelId": str(world.general.id), "content": "x"})
    assert (status, answer["error"]) == (401, "unauthorized")
    assert bot_posts(discord_emu, world.general) == []


async def test_invalid_json_is_400(discord_emu: DiscordEmulator, world: World, endpoint: Endpoint) -> None:
    status, answer, _ = await endpoint.post(None, raw=b'{"channelId": "1", "content": ')
    assert (status, answer["error"]) == (400, "invalid_json")
    status, answer, _ = await endpoint.post(None, raw=b"\xff\xfe")
    assert (status, answer["error"]) == (400, "invalid_json")
    assert bot_posts(discord_emu, world.general) == []


@pytest.mark.parametrize(
    ("embeds", "field"),
    [
        ([{"title": "x" * 257}], "embeds[0].title"),
        ([{"description": "x" * 4097}], "embeds[0].description"),
        ([{"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}], "embeds[0].fields"),
        (
            [{"title": "t", "fields": [{"name": "n", "value": "v"}, {"name": "n", "value": "v" * 1025}]}],
            "embeds[0].fields[1].value",
        ),
        ([{"title": "t", "footer": {"text": "x" * 2049}}], "embeds[0].footer.text"),
        ([{"title": "t", "author": {"name": "x" * 257}}], "embeds[0].author.name"),
        ([{"description": "x" * 4000}, {"description": "x" * 2001}], "embeds"),
        ([{"title": "t"}] * 11, "embeds"),
    ],
)
async def test_oversize_embeds_are_400_naming_the_field(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint, embeds: list[Any], field: str
) -> None:
    status, answer, _ = await endpoint.post({"channelId": str(world.general.id), "embeds": embeds})
    assert (status, answer["error"]) == (400, "invalid_payload")
    assert answer["problems"][0]["field"] == field
    assert f"`{field}`" in answer["message"]
    assert bot_posts(discord_emu, world.general) == []
    assert [s for s, _ in await audit(endpoint.bot)] == [400]


async def test_missing_channel_id_is_400(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    status, answer, _ = await endpoint.post({"content": "x"})
    assert (status, answer["problems"]) == (400, [{"field": "channelId", "problem": "is required"}])


async def test_unknown_channel_is_404(discord_emu: DiscordEmulator, world: World, endpoint: Endpoint) -> None:
    status, answer, _ = await endpoint.post({"channelId": "123456789012345678", "content": "x"})
    assert (status, answer["error"]) == (404, "unknown_channel")


async def test_a_key_cannot_reach_another_guilds_channel(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    status, answer, _ = await endpoint.post({"channelId": str(endpoint.other_channel.id), "content": "x"})
    assert (status, answer["error"]) == (403, "wrong_guild")
    assert bot_posts(discord_emu, endpoint.other_channel) == []
    assert [s for s, _ in await audit(endpoint.bot)] == [403]


async def test_oversize_body_is_413(discord_emu: DiscordEmulator, world: World, endpoint: Endpoint) -> None:
    body = {
        "channelId": str(world.general.id),
        "content": "x",
        "padding": "y" * (http_api.MAX_BODY_BYTES + 1),
    }
    status, answer, _ = await endpoint.post(body)
    assert (status, answer["error"]) == (413, "payload_too_large")
    assert bot_posts(discord_emu, world.general) == []


async def test_rate_limit_per_key_is_429_with_retry_after(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    body = {"channelId": str(world.general.id), "content": "tick"}
    # Posts queue in the channel's write budget (4 per 5.5 s), so this test spans seconds: freeze the
    # key counter's clock mid-minute so a minute boundary cannot fall between the posts.
    assert endpoint.bot.http_server is not None
    frozen = time.time() // 60 * 60 + 30
    endpoint.bot.http_server.rate.clock = lambda: frozen
    for _ in range(RATE_LIMIT):
        assert (await endpoint.post(body))[0] == 200
    status, answer, headers = await endpoint.post(body)
    assert (status, answer["error"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 60 and answer["retry_after"] == int(headers["Retry-After"])
    assert len(bot_posts(discord_emu, world.general)) == RATE_LIMIT
    assert [s for s, _ in await audit(endpoint.bot)] == [200] * RATE_LIMIT + [429]


async def test_keys_created_with_the_command_work(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint
) -> None:
    itx = await discord_emu.run_command(
        world.admin, "config apikey create", options={"name": "dash"}, channel=world.general
    )
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    key = re.search(r"```\n(\S+)\n```", itx.original["content"]).group(1)  # type: ignore[union-attr]
    status, _, _ = await endpoint.post({"channelId": str(world.thread.id), "content": "via dash"}, key=key)
    assert status == 200
    listing = await discord_emu.run_command(world.admin, "config apikey list", channel=world.general)
    await listing.wait_for_response(timeout=5)
    description = listing.original["embeds"][0]["description"]
    assert "dash" in description and key not in description and key[:12] in description


async def test_healthz(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    async with endpoint.http.get(f"{endpoint.base}/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok" and body["gateway"] is True and body["database"] is True

    async def broken(_: Any) -> float:
        raise OSError("database is gone")

    monkeypatch.setattr(http_api, "ping_database", broken)
    async with endpoint.http.get(f"{endpoint.base}/healthz") as response:
        assert response.status == 503
        assert (await response.json())["database"] is False


# Malformed input is a 400 naming the field (never a 500); `/embed send` answers with the same sentence
# (tests/e2e/test_governance.py checks that side against these).
MALFORMED: list[tuple[str, bytes, str]] = [
    ("nested", b"[" * 50_000, "`payload` nests brackets deeper than 32 levels."),
    ("superscript", '{"channelId": "²", "content": "x"}'.encode(), "`channelId` must be a channel id"),
    ("long id", b'{"channelId": "' + b"7" * 5000 + b'", "content": "x"}', "`channelId` must be a channel id"),
    ("long number", b'{"channelId": ' + b"7" * 5000 + b', "content": "x"}', "`payload` is not JSON"),
]


@pytest.mark.parametrize(("raw", "sentence"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_input_is_a_400_naming_the_field(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint, raw: bytes, sentence: str
) -> None:
    status, answer, _ = await endpoint.post(None, raw=raw)
    assert status == 400, answer
    assert answer["error"] in {"invalid_json", "invalid_payload"}
    assert answer["message"].startswith(sentence)
    assert answer["problems"][0]["field"] in {"payload", "channelId"}
    assert bot_posts(discord_emu, world.general) == []
    assert [s for s, _ in await audit(endpoint.bot)] == [400]


async def test_posts_share_the_channel_budget_with_a_streamed_reply(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    gateway = PacedGateway("openai", reply="unused")
    gateway.stream_chunks = [f"token{i} " for i in range(30)]
    gateway.chunk_delay = 0.1  # a 3-second stream
    await gateway.start()
    try:
        settings = chat_settings(
            discord_emu, gateway, tmp_path, http_port=0, send_data_rate_limit=100, chat_edit_interval=0.5
        )
        async with running_bot(discord_emu, settings) as bot, aiohttp.ClientSession() as http:
            assert bot.http_server is not None
            created = await bot.api_keys.create(world.guild.id, "ci", world.admin.id)
            endpoint = Endpoint(bot, f"http://127.0.0.1:{bot.http_server.port}", created.key, http, None)
            me = discord_emu.bot_user.id
            await discord_emu.send_message(world.member, world.general, f"<@{me}> go")
            await until(lambda: len(bot_posts(discord_emu, world.general)) == 1)  # the reply has begun
            posts = await asyncio.gather(
                *(
                    endpoint.post({"channelId": str(world.general.id), "content": f"news {i}"})
                    for i in range(6)
                )
            )
            answer = await discord_emu.wait_for_message(world.general, final_from(discord_emu), timeout=20)
    finally:
        await gateway.close()
    assert [status for status, _, _ in posts] == [200] * 6
    assert answer["content"] == "".join(gateway.stream_chunks).strip()
    assert {m["content"] for m in bot_posts(discord_emu, world.general)} >= {f"news {i}" for i in range(6)}
    assert discord_emu.rate_limited == []


async def test_bad_keys_are_limited_per_address_before_any_database_work_and_aggregated(
    discord_emu: DiscordEmulator, world: World, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert endpoint.bot.http_server is not None
    server = endpoint.bot.http_server
    frozen = time.monotonic() // 60 * 60 + 30
    server.failures.clock = lambda: frozen  # one minute for the whole flood
    endpoint.bot.send_audit.clock = lambda: frozen
    # The good key proves itself once; the flood that follows never locks it out.
    body = {"channelId": str(world.general.id), "content": "still here"}
    assert (await endpoint.post(body))[0] == 200
    lookups = 0
    authenticate = endpoint.bot.api_keys.authenticate

    async def counted(secret: str) -> Any:
        nonlocal lookups
        lookups += 1
        return await authenticate(secret)

    monkeypatch.setattr(endpoint.bot.api_keys, "authenticate", counted)
    statuses = []
    for index in range(200):
        key = None if index % 2 else f"cnc_forged-{index}"
        statuses.append((await endpoint.post({"content": "x"}, key=key))[0])
    assert statuses[: http_api.AUTH_FAILURES_PER_MINUTE] == [401] * http_api.AUTH_FAILURES_PER_MINUTE
    assert set(statuses[http_api.AUTH_FAILURES_PER_MINUTE :]) == {429}
    assert lookups <= http_api.AUTH_FAILURES_PER_MINUTE // 2  # the turned-away ones queried nothing
    assert (await endpoint.post(body))[0] == 200
    await endpoint.bot.send_audit.flush()
    async with endpoint.bot.db_sessions() as session:
        rows = list(await session.scalars(select(SendDataAudit).order_by(SendDataAudit.id)))
    refused = [r for r in rows if r.status != 200]
    assert len(refused) == 1  # 200 bad posts, one row: this address, this minute
    assert refused[0].count == 200 and refused[0].refusal_key == "addr:127.0.0.1"
    assert [r.count for r in rows if r.status == 200] == [1, 1]


async def test_audit_rows_older_than_the_retention_are_pruned(endpoint: Endpoint) -> None:
    audit_log = endpoint.bot.send_audit
    now = time.time()
    audit_log.clock = lambda: now - 31 * 86400
    await audit_log.record(source="command", status=200, detail="posted", guild_id=1)
    await audit_log.record(source="command", status=400, detail="old refusal", actor_id=5)
    audit_log.clock = lambda: now
    await audit_log.record(source="command", status=200, detail="posted", guild_id=1)
    assert await audit_log.prune(30) == 2
    assert [detail for _, detail in await audit(endpoint.bot)] == ["posted"]


async def test_the_maintenance_task_flushes_and_stops_with_the_bot(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    settings = emulator_settings(discord_emu, sqlite_url(tmp_path), http_port=0)
    async with running_bot(discord_emu, settings) as bot:
        audit_log = bot.send_audit
        task = audit_log._task
        assert task is not None and not task.done()
        audit_log.note_refused(remote="203.0.113.9", status=429, detail="auth_rate_limited")
    assert task.done() and audit_log._task is None
    engine = create_engine(sqlite_url(tmp_path))
    async with create_sessionmaker(engine)() as session:
        [row] = list(await session.scalars(select(SendDataAudit)))
    await engine.dispose()
    assert (row.refusal_key, row.count, row.status) == ("addr:203.0.113.9", 1, 429)
