"""Governance end to end: /config (run-time admin check, each setting, audit), /usage, /embed send."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import Concord
from bot.providers.redact import Redactor
from bot.providers.types import KeyUsage
from bot.services.guild_config import GuildConfigService
from bot.services.quotas import Feature, QuotaExceeded
from bot.store.models import ConfigAudit, OperatorGrant, SendDataAudit
from cogs.owner import usage_lines
from tests.e2e.harness import (
    World,
    chat_settings,
    emulator_settings,
    final_from,
    run,
    running_bot,
    sqlite_url,
    text_of,
    write_providers_file,
)
from tests.e2e.test_http_api import MALFORMED
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("digicord")
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def bot(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, tmp_path: Path
) -> AsyncIterator[Concord]:
    settings = emulator_settings(
        discord_emu, sqlite_url(tmp_path), providers_file=write_providers_file(tmp_path, [gateway])
    )
    async with running_bot(discord_emu, settings) as running:
        yield running


async def audit_rows(bot: Concord) -> list[ConfigAudit]:
    async with bot.db_sessions() as session:
        return list(await session.scalars(select(ConfigAudit).order_by(ConfigAudit.id)))


async def test_config_is_refused_at_run_time_to_non_admins_who_can_see_it(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    # A server admin may have shown /config to everyone (integration settings); the run-time check holds.
    for command, options in [
        ("config show", {}),
        ("config capability", {"name": "vision", "enabled": False}),
        ("config apikey create", {"name": "sneaky"}),
        ("embed send", {"channel": world.general, "json": '{"content": "hi"}'}),
        ("usage-reset", {"user": world.admin}),
    ]:
        itx = await discord_emu.run_command(
            world.member, command, options=options, channel=world.general, ignore_default_permissions=True
        )
        await itx.wait_for_response(timeout=5)
        assert itx.ephemeral
        assert "Manage Server" in itx.original["content"], command
    assert await audit_rows(bot) == []
    assert (await GuildConfigService(bot.db_sessions).get(world.guild.id)).is_enabled("vision")
    assert [
        m for m in discord_emu.messages(world.general) if m["_author_id"] == discord_emu.bot_user.id
    ] == []


async def test_config_is_hidden_from_members_and_dms(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    with pytest.raises(AssertionError):
        await discord_emu.run_command(world.member, "config show", channel=world.general)
    with pytest.raises(AssertionError):
        await discord_emu.run_command(world.admin, "config show", channel=discord_emu.dm_channel(world.admin))


async def test_each_setting_round_trips_into_show_and_audit(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, bot: Concord
) -> None:
    models = await bot.providers.list_models("chat")
    chat_model = models[0].id
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("config model", {"kind": "chat", "name": chat_model.upper()}, chat_model),
        ("config model", {"kind": "tts", "name": "sophia"}, "sophia"),
        ("config capability", {"name": "songs", "enabled": False}, "songs is now off"),
        ("config chat-everywhere", {"enabled": False}, "only the channels switched on"),
        ("config chat-channel", {"channel": world.general, "enabled": True}, "answers mentions"),
        ("config max-input", {"characters": 1500}, "1500"),
        ("config plan", {"role": world.mods, "plan": "premium"}, "premium"),
        (
            "config plan",
            {"role": world.mods, "plan": "custom", "limits": "llm.minute=3 imagine.day=-"},
            "llm.minute=3",
        ),
        ("config bypass-role", {"role": world.mods}, "bypass role"),
        ("config log-channel", {"channel": world.general}, "Log channel"),
    ]
    for command, options, expected in steps:
        itx = await run(discord_emu, world.admin, command, world.general, **options)
        assert expected in text_of(itx), (command, text_of(itx))

    effective = await GuildConfigService(bot.db_sessions).get(world.guild.id)
    assert effective.chat_model == chat_model and effective.tts_voice == "sophia"
    assert not effective.is_enabled("songs") and not effective.chat_all_channels
    assert effective.chat_channel_ids == {world.general.id}
    assert effective.max_input_chars == 1500
    assert effective.role_plans == {str(world.mods.id): {"llm": {"minute": 3}, "imagine": {"day": None}}}
    assert effective.quota_bypass_role_id == world.mods.id and effective.log_channel_id == world.general.id

    show = text_of(await run(discord_emu, world.admin, "config show", world.general))
    only_general = f"only in <#{world.general.id}> (and their threads)"
    for fragment in (chat_model, "sophia", "⛔ songs", only_general, "/chat works in every channel", "1500"):
        assert fragment in show, fragment

    rows = await audit_rows(bot)
    assert len(rows) == len(steps)
    assert all(row.actor_id == world.admin.id for row in rows)
    first_plan = next(r for r in rows if r.setting == "role_plan")
    assert (first_plan.target_id, first_plan.old_value, first_plan.new_value) == (
        world.mods.id,
        None,
        "premium",
    )
    audit = text_of(await run(discord_emu, world.admin, "config audit", world.general))
    assert "role_plan" in audit and "chat_model" in audit and f"<@{world.admin.id}>" in audit
    # The log channel announces changes made after it was set, through the channel's write budget.
    writes_before = bot.write_budget.stats.writes
    await run(discord_emu, world.admin, "config capability", world.general, name="songs", enabled=True)
    announced = await discord_emu.wait_for_message(world.general, lambda m: "changed songs" in m["content"])
    assert f"<@{world.admin.id}>" in announced["content"]
    assert bot.write_budget.stats.writes == writes_before + 1


async def test_invalid_settings_are_refused_and_not_recorded(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    itx = await run(
        discord_emu, world.admin, "config model", world.general, kind="chat", name="no-such-model"
    )
    assert "isn't in the chat model list" in text_of(itx)
    itx = await run(
        discord_emu,
        world.admin,
        "config plan",
        world.general,
        role=world.mods,
        plan="custom",
        limits="llm.week=3",
    )
    assert "windows are minute, hour, day" in text_of(itx)
    assert await audit_rows(bot) == []


async def test_system_prompt_through_the_modal(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    itx = await discord_emu.run_command(
        world.admin, "config prompt", options={"channel": world.general}, channel=world.general
    )
    await itx.wait_for_response(timeout=5)
    assert itx.response_type == 9
    [row] = itx.modal["components"]
    field_id = row["components"][0]["custom_id"]
    submitted = await discord_emu.submit_modal(
        world.admin, itx, itx.modal["custom_id"], {field_id: "You are a pirate. Arr."}
    )
    await submitted.wait_for_response(timeout=5)
    assert "set (22 characters)" in submitted.original["content"]
    assert (
        await GuildConfigService(bot.db_sessions).channel(world.general.id)
    ).system_prompt == "You are a pirate. Arr."
    [row_audit] = await audit_rows(bot)
    assert (row_audit.setting, row_audit.target_id) == ("system_prompt", world.general.id)
    # Opening it again shows the current prompt to edit.
    again = await discord_emu.run_command(
        world.admin, "config prompt", options={"channel": world.general}, channel=world.general
    )
    await again.wait_for_response(timeout=5)
    assert again.modal["components"][0]["components"][0]["value"] == "You are a pirate. Arr."


async def test_usage_shows_remaining_and_admins_can_look_up_and_reset(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    for _ in range(3):
        await bot.quotas.consume(world.member.id, Feature.LLM, guild_id=world.guild.id)
    itx = await run(discord_emu, world.member, "usage", world.general)
    assert itx.ephemeral
    usage = text_of(itx)
    assert "Plan: **free**" in usage
    assert "7/10" in usage and "1997/2000" in usage  # LLM: minute and day

    # The same allowance in a DM.
    dm = text_of(await run(discord_emu, world.member, "usage", discord_emu.dm_channel(world.member)))
    assert "7/10" in dm

    refused = await run(discord_emu, world.member, "usage", world.general, user=world.admin)
    assert "Manage Server" in refused.original["content"]
    looked_up = text_of(await run(discord_emu, world.admin, "usage", world.general, user=world.member))
    assert "Usage of bob" in looked_up and "7/10" in looked_up

    # A server's admin resets only that server's counters; the user's own allowance is the owners'.
    reset = await run(
        discord_emu, world.admin, "usage-reset", world.general, user=world.member, feature="llm"
    )
    assert "Reset" in reset.original["content"] and "in this server" in reset.original["content"]
    assert "7/10" in text_of(await run(discord_emu, world.member, "usage", world.general))
    bot.settings.owner_ids.append(world.admin.id)
    reset = await run(discord_emu, world.admin, "owner usage-reset", world.general, user=world.member)
    assert "global usage of every feature" in reset.original["content"]
    assert "10/10" in text_of(await run(discord_emu, world.member, "usage", world.general))


async def test_a_premium_role_shows_in_usage(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    await run(discord_emu, world.admin, "config plan", world.general, role=world.mods, plan="premium")
    usage = text_of(await run(discord_emu, world.admin, "usage", world.general))
    # The server's premium plan is the server's own caps; the user's global plan stays free.
    assert "Plan: **free**" in usage and "own caps (**premium**)" in usage
    assert "here: minute ▰▰▰▰▰▰▰▰ 30/30" in usage and "minute ▰▰▰▰▰▰▰▰ 10/10" in usage


async def test_embed_send_posts_the_schema_message(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    payload = {
        "content": "Release notes",
        "embeds": [
            {
                "title": "v2.0",
                "description": "Shiny things.",
                "color": "#5865F2",
                "author": {"name": "Concord"},
                "footer": {"text": "thanks", "icon_url": ""},
                "fields": [{"name": "New", "value": "/usage", "inline": True}, {"name": "", "value": ""}],
            }
        ],
        "components": [
            {
                "type": 1,
                "components": [{"type": 2, "style": 5, "label": "Docs", "url": "https://example.com/docs"}],
            }
        ],
    }
    itx = await run(
        discord_emu, world.admin, "embed send", world.general, channel=world.general, json=json.dumps(payload)
    )
    assert "Posted in" in itx.original["content"]
    posted = await discord_emu.wait_for_message(world.general, lambda m: m["content"] == "Release notes")
    [embed] = posted["embeds"]
    assert embed["title"] == "v2.0" and embed["color"] == 0x5865F2
    assert embed["author"]["name"] == "Concord" and embed["footer"]["text"] == "thanks"
    assert embed["fields"] == [{"name": "New", "value": "/usage", "inline": True}]
    assert posted["components"][0]["components"][0]["url"] == "https://example.com/docs"

    too_long = {"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v" * 1025}]}]}
    itx = await run(
        discord_emu,
        world.admin,
        "embed send",
        world.general,
        channel=world.general,
        json=json.dumps(too_long),
    )
    assert "`embeds[0].fields[0].value` is 1025 characters; at most 1024 allowed" in itx.original["content"]
    async with bot.db_sessions() as session:
        rows = list(await session.scalars(select(SendDataAudit).order_by(SendDataAudit.id)))
    assert [(r.source, r.status, r.actor_id) for r in rows] == [
        ("command", 200, world.admin.id),
        ("command", 400, world.admin.id),
    ]
    assert rows[0].message_id == int(posted["id"])


async def test_owner_commands_are_for_owners_only(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    refused = await run(discord_emu, world.admin, "owner stats", world.general)
    assert refused.ephemeral and "can't use" in refused.original["content"]
    bot.settings.owner_ids.append(world.admin.id)
    stats = text_of(await run(discord_emu, world.admin, "owner stats", world.general))
    assert "Guilds: 1" in stats and "Failed extensions: none" in stats
    synced = await run(discord_emu, world.admin, "owner sync", world.general, guild_id=str(world.guild.id))
    assert re.search(r"Synced \d+ commands to guild", synced.original["content"])
    assert discord_emu.guild_commands(world.guild)
    reloaded = await run(discord_emu, world.admin, "owner reload", world.general, extension="cogs.usage")
    assert "Reloaded `cogs.usage`" in reloaded.original["content"]
    assert "10/10" in text_of(await run(discord_emu, world.member, "usage", world.general))


@pytest.mark.parametrize(
    ("raw", "sentence"),
    [
        # The option holds at most 6000 characters; the sentence is the endpoint's for 50,000 brackets.
        ("[" * 3000, "`payload` nests brackets deeper than 32 levels."),
        ('{"channelId": "²", "content": "x"}', "`channelId` must be a channel id"),
        ('{"channelId": "' + "7" * 5000 + '", "content": "x"}', "`channelId` must be a channel id"),
        ('{"channelId": ' + "7" * 5000 + ', "content": "x"}', "`payload` is not JSON"),
    ],
    ids=["nested", "superscript", "long id", "long number"],
)
async def test_embed_send_answers_malformed_json_with_the_endpoints_sentence(
    discord_emu: DiscordEmulator, world: World, bot: Concord, raw: str, sentence: str
) -> None:
    assert sentence in {expected for _, _, expected in MALFORMED}
    itx = await run(discord_emu, world.admin, "embed send", world.general, channel=world.general, json=raw)
    assert itx.ephemeral and itx.original["content"].startswith(sentence)
    assert "error id" not in itx.original["content"].lower()
    async with bot.db_sessions() as session:
        statuses = list(await session.scalars(select(SendDataAudit.status)))
    assert statuses == [400]


def test_owner_stats_leaves_out_nested_credentials_of_check_answers() -> None:
    usage = KeyUsage(
        provider="emu",
        plan="premium",
        values={
            "usage.llms.day": 12,
            "account.api_key": "sk-live-abcdef",
            "account.accessToken": "tok-123456",
            "keys.0.token": "tok-654321",
            "auth.secret": "s3cr3t",
            "note": "key sk-known-1234 still active",
        },
    )
    shown = "\n".join(usage_lines(usage, Redactor(["sk-known-1234"])))
    assert "usage.llms.day: 12" in shown and "plan: premium" in shown
    for secret in ("sk-live-abcdef", "tok-123456", "tok-654321", "s3cr3t", "sk-known-1234"):
        assert secret not in shown


async def test_an_admin_of_another_server_cannot_reset_read_or_lift_a_users_own_allowance(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    eve = discord_emu.create_user("eve")
    stranger = discord_emu.create_user("stranger")
    other = discord_emu.create_guild("Server B", owner=eve)
    vip = other.create_role("VIP")
    lounge = other.create_text_channel("lounge")
    other.add_member(eve)
    other.add_member(world.member, roles=[vip])
    async with running_bot(discord_emu, emulator_settings(discord_emu, sqlite_url(tmp_path))) as bot:
        bob = world.member.id
        for _ in range(10):  # bob's whole LLM minute, used in server A
            await bot.quotas.consume(bob, Feature.LLM, guild_id=world.guild.id)

        # Reset: scoped to server B, the user's own allowance is untouched.
        reset = await run(discord_emu, eve, "usage-reset", lounge, user=world.member)
        assert "in this server" in reset.original["content"]
        with pytest.raises(QuotaExceeded):
            await bot.quotas.consume(bob, Feature.LLM, guild_id=other.id)
        refused = await run(discord_emu, eve, "owner usage-reset", lounge, user=world.member)
        assert "can't use" in refused.original["content"]

        # Read: only members of B, and only what is left, never where it went.
        looked_up = text_of(await run(discord_emu, eve, "usage", lounge, user=world.member))
        assert "0/10" in looked_up and "Concord Test" not in looked_up and "here:" not in looked_up
        outsider = await run(discord_emu, eve, "usage", lounge, user=stranger)
        assert "isn't a member of this server" in outsider.original["content"]

        # Lift: a bypass role and an @everyone plan with no LLM limit only relax server B's own caps.
        await run(discord_emu, eve, "config bypass-role", lounge, role=vip)
        await run(
            discord_emu, eve, "config plan", lounge, role=other.everyone, plan="custom", limits="llm.minute=-"
        )
        for roles in ([vip.id], [other.id]):
            with pytest.raises(QuotaExceeded, match="your"):
                await bot.quotas.consume(bob, Feature.LLM, guild_id=other.id, role_ids=roles)


async def test_owners_grant_and_revoke_plans(
    discord_emu: DiscordEmulator, world: World, bot: Concord
) -> None:
    refused = await run(
        discord_emu, world.admin, "owner grant user", world.general, user=world.member, plan="premium"
    )
    assert "can't use" in refused.original["content"]
    bot.settings.owner_ids.append(world.admin.id)
    granted = await run(
        discord_emu,
        world.admin,
        "owner grant user",
        world.general,
        user=world.member,
        plan="premium",
        expires="30d",
    )
    assert "now has the **premium** plan until" in granted.original["content"]
    assert "Plan: **premium**" in text_of(await run(discord_emu, world.member, "usage", world.general))
    bad = await run(
        discord_emu, world.admin, "owner grant server", world.general, server_id="²", plan="premium"
    )
    assert "up to 19 digits" in bad.original["content"]
    await run(
        discord_emu,
        world.admin,
        "owner grant server",
        world.general,
        server_id=str(world.guild.id),
        plan="unlimited",
    )
    assert "unlimited" in text_of(await run(discord_emu, world.admin, "usage", world.general))
    revoked = await run(discord_emu, world.admin, "owner revoke user", world.general, user=world.member)
    assert "grant ended" in revoked.original["content"]
    async with bot.db_sessions() as session:
        rows = list(await session.scalars(select(OperatorGrant).order_by(OperatorGrant.id)))
    assert [(r.subject_type, r.plan, r.granted_by, r.revoked_by) for r in rows] == [
        ("user", "premium", world.admin.id, world.admin.id),
        ("server", "unlimited", world.admin.id, None),
    ]


async def test_with_the_unlimited_default_plan_fifty_messages_in_a_minute_are_answered(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    # One user, fifty mentions within a minute (free would answer ten). Each goes to its own channel so
    # that Discord's per-channel write budget, not the quota, is the only pacing.
    channels = [world.guild.create_text_channel(f"room-{n}") for n in range(50)]
    gateway = GatewayEmulator("openai", reply="Answered.")
    await gateway.start()
    try:
        settings = chat_settings(discord_emu, gateway, tmp_path, quota_default_plan="unlimited")
        async with running_bot(discord_emu, settings):
            me = discord_emu.bot_user.id
            started = time.monotonic()
            for channel in channels:
                await discord_emu.send_message(world.member, channel, f"<@{me}> hi")
            answers = await asyncio.gather(
                *(discord_emu.wait_for_message(c, final_from(discord_emu), timeout=50) for c in channels)
            )
            elapsed = time.monotonic() - started
    finally:
        await gateway.close()
    assert elapsed < 60
    assert [a["content"] for a in answers] == ["Answered."] * 50
