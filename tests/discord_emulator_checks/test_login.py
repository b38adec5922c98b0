"""Login, READY and the guild cache the real client builds from the emulator's gateway."""

from __future__ import annotations

import asyncio
import contextlib

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import ClientSession

from tests.emulators.discord_emulator import DiscordEmulator

from .conftest import World
from .probe_bot import ProbeBot


async def test_bot_logs_in_and_caches_the_guild(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    assert bot.user is not None and bot.user.id == emu.bot_user.id
    assert bot.application_id == emu.application_id
    assert (await bot.application_info()).owner.id == emu.app_owner.id

    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert guild.owner_id == world.alice.id
    assert {c.name for c in guild.text_channels} == {"general"}
    assert [c.name for c in guild.voice_channels] == ["Voice"]
    assert [t.name for t in guild.threads] == ["a thread"]
    assert {r.name for r in guild.roles} >= {"@everyone", "Mods", "Probe"}

    bob = guild.get_member(world.bob.id)
    assert bob is not None and bob.nick == "bobby"
    assert bob.guild_permissions.manage_guild and not bob.guild_permissions.administrator
    owner = guild.get_member(world.alice.id)
    assert owner is not None and owner.guild_permissions.administrator
    assert guild.me.guild_permissions.send_messages

    assert [c["name"] for c in emu.global_commands] and emu.requests_to("PUT", r"/commands$")


async def test_world_changes_after_connect_reach_the_cache(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    carol = emu.create_user("carol")
    news = world.guild.create_text_channel("news")
    role = world.guild.create_role("Helpers", permissions=0)
    world.guild.add_member(carol, roles=[role])
    world.guild.set_voice_state(carol, world.voice)
    other = emu.create_guild("Second Guild", owner=carol)

    # Events are delivered in order; a round trip through the gateway shows they arrived.
    await emu.send_message(carol, news, "marker")
    await bot.wait_for_received(1)
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    assert guild.get_channel(news.id) is not None
    member = guild.get_member(carol.id)
    assert member is not None and [r.name for r in member.roles][1:] == ["Helpers"]
    assert member.voice is not None and member.voice.channel is not None
    assert member.voice.channel.id == world.voice.id
    assert bot.get_guild(other.id) is not None


async def test_bad_token_is_refused_like_discord(emu: DiscordEmulator) -> None:
    async with ClientSession() as session:
        resp = await session.get(f"{emu.api_base}/users/@me", headers={"Authorization": "Bot nope"})
        assert resp.status == 401
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
        resp = await session.get(f"{emu.api_base}/gateway/bot", headers={"Authorization": f"Bot {emu.token}"})
        body = await resp.json()
        assert body["url"] == emu.gateway_url and body["shards"] == 1


async def test_login_with_wrong_token_raises(emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", emu.api_base)
    client = ProbeBot()
    with pytest.raises(discord.LoginFailure):
        await client.login("wrong")
    await client.close()


async def test_resume_after_reconnect(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    await emu.request_reconnect()
    # While the client reconnects, events queue in the session and are replayed on RESUME.
    await emu.send_message(world.alice, world.general, "during reconnect")
    await bot.wait_for_received(1)
    for _ in range(100):
        if emu.gateway.resumed:
            break
        await asyncio.sleep(0.02)
    assert emu.gateway.resumed == 1
    assert [p["op"] for p in emu.gateway.received].count(6) == 1


async def start_probe(emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch, **kwargs: bool) -> ProbeBot:
    monkeypatch.setattr(discord.http.Route, "BASE", emu.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(emu.gateway_url))
    return ProbeBot(**kwargs)


async def test_message_content_intent_is_honoured(
    emu: DiscordEmulator, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_probe(emu, monkeypatch, message_content=False)
    runner = asyncio.create_task(client.start(emu.token))
    try:
        await emu.wait_until_ready()
        await emu.send_message(world.alice, world.general, "private words")
        await emu.send_message(world.alice, world.general, f"{emu.bot_user.mention} words for the bot")
        await emu.send_message(world.alice, emu.dm_channel(world.alice), "dm words")
        plain, mentioned, dm = await client.wait_for_received(3)
        assert (
            plain.content == ""
            and mentioned.content.endswith("words for the bot")
            and dm.content == "dm words"
        )
    finally:
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


async def test_disallowed_privileged_intent_closes_4014(
    emu: DiscordEmulator, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.set_privileged_intents(0)
    client = await start_probe(emu, monkeypatch)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(client.start(emu.token), 5)
    await client.close()
