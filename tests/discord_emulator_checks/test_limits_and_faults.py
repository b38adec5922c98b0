"""Discord's limits, rate limits and injected faults, as the real client experiences them."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import discord
import pytest
from discord.http import Route

from tests.emulators.discord_emulator import DiscordEmulator

from .conftest import World
from .probe_bot import ProbeBot


async def post_raw(bot: ProbeBot, channel_id: int, payload: dict[str, Any]) -> Any:
    """Send a body through discord.py's own HTTP client, bypassing its client-side checks."""
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
    return await bot.http.request(route, json=payload)


def button(custom_id: str) -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": "b", "custom_id": custom_id}


@pytest.mark.parametrize(
    ("payload", "status", "code", "error_path"),
    [
        ({"content": "x" * 2001}, 400, 50035, ["content"]),
        ({"content": ""}, 400, 50006, None),
        ({"embeds": [{"title": "t" * 257}]}, 400, 50035, ["embeds", "0", "title"]),
        ({"embeds": [{"description": "d" * 4097}]}, 400, 50035, ["embeds", "0", "description"]),
        ({"embeds": [{"title": "t"}] * 11}, 400, 50035, ["embeds"]),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, 400, 50035, ["embeds", "0", "fields"]),
        (
            {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
            400,
            50035,
            ["embeds", "0", "fields"],
        ),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, 400, 50035, ["embeds", "0", "footer", "text"]),
        ({"embeds": [{"author": {"name": "a" * 257}}]}, 400, 50035, ["embeds", "0", "author", "name"]),
        ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, 400, 50035, ["embeds"]),
        (
            {"components": [{"type": 1, "components": [button(f"b{i}")]} for i in range(6)]},
            400,
            50035,
            ["components"],
        ),
        (
            {"components": [{"type": 1, "components": [button(f"b{i}") for i in range(6)]}]},
            400,
            50035,
            ["components"],
        ),
        ({"components": [{"type": 1, "components": [button("c" * 101)]}]}, 400, 50035, ["components"]),
    ],
)
async def test_limits_are_rejected(
    emu: DiscordEmulator,
    world: World,
    bot: ProbeBot,
    payload: dict[str, Any],
    status: int,
    code: int,
    error_path: list[str] | None,
) -> None:
    with pytest.raises(discord.HTTPException) as rejected:
        await post_raw(bot, world.general.id, payload)
    assert rejected.value.status == status and rejected.value.code == code
    body = emu.requests[-1].response
    if error_path is not None:
        node = body["errors"]
        for key in error_path:
            node = node[key]
    assert emu.messages(world.general) == []


async def test_upload_over_the_limit_is_413(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    big = discord.File(io.BytesIO(b"\0" * (10 * 1024 * 1024 + 1)), "big.bin")
    with pytest.raises(discord.HTTPException) as rejected:
        await channel.send("too big", file=big)
    assert rejected.value.status == 413 and rejected.value.code == 40005


async def test_burst_is_spread_by_the_clients_rate_limiter(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    emu.configure_rate_limit("channel_messages", 5, 0.3)
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    await asyncio.gather(*(channel.send(f"msg {i}") for i in range(10)))
    assert sorted(m["content"] for m in emu.messages(world.general)) == sorted(f"msg {i}" for i in range(10))
    assert len(emu.rate_limited) <= 1, [r.path for r in emu.rate_limited]
    # Two windows were needed, so discord.py must have waited for the first to reset.
    assert time.monotonic() - started >= 0.25
    headers = emu.requests_to("POST", r"/messages$")[0].headers
    assert headers["X-RateLimit-Limit"] == "5" and "X-RateLimit-Bucket" in headers


async def test_rate_limit_429_when_the_client_ignores_headers(emu: DiscordEmulator, world: World) -> None:
    emu.configure_rate_limit("channel_messages", 2, 5.0)
    url = f"{emu.api_base}/channels/{world.general.id}/messages"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {emu.token}"}) as session:
        statuses = []
        for i in range(3):
            async with session.post(url, json={"content": str(i)}) as resp:
                statuses.append(resp.status)
                body = await resp.json()
        assert statuses == [200, 200, 429]
        assert body["message"] == "You are being rate limited." and body["global"] is False
        assert resp.headers["Retry-After"] and resp.headers["X-RateLimit-Remaining"] == "0"
    assert len(emu.rate_limited) == 1


async def test_injected_500_is_retried(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    emu.fail_next("POST", r"/channels/\d+/messages", status=500)
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    await channel.send("eventually")  # discord.py sleeps 1 s, then retries
    statuses = [r.status for r in emu.requests_to("POST", r"/messages$")]
    assert statuses == [500, 200]
    assert [m["content"] for m in emu.messages(world.general)] == ["eventually"]


async def test_injected_429_is_waited_out(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    emu.fail_next("POST", r"/channels/\d+/messages", status=429, retry_after=0.2)
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    await channel.send("after waiting")
    assert time.monotonic() - started >= 0.2
    assert len(emu.rate_limited) == 1
    assert emu.messages(world.general)[0]["content"] == "after waiting"


async def test_injected_error_body_and_delay(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    emu.fail_next("*", r"/messages$", status=403, body={"message": "Missing Access", "code": 50001})
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as denied:
        await channel.send("nope")
    assert denied.value.code == 50001

    emu.delay(r"/messages$", 0.3, method="POST", times=1)
    started = time.monotonic()
    await channel.send("slow")
    assert time.monotonic() - started >= 0.3


async def test_webhook_followups_have_their_own_bucket(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    emu.configure_rate_limit("channel_messages", 1, 10.0)
    itx = await emu.run_command(world.bob, "slow", channel=world.general)
    await itx.wait_for(lambda i: len(i.followups) == 2)
    assert not emu.rate_limited
    hook = emu.requests_to("POST", r"^/webhooks/")[0]
    assert hook.headers["X-RateLimit-Bucket"] != ""
    assert not emu.requests_to("POST", r"/callback$")[0].headers
