"""The foundation through the real wire: login, sync, /help, /ping, DMs, and the error path."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import EXTENSIONS, Concord
from tests.e2e.harness import World, emulator_settings, running_bot, sqlite_url
from tests.emulators.discord_emulator import DiscordEmulator

TEST_EXTENSIONS = (*EXTENSIONS, "tests.e2e.sample_cog")


@pytest.fixture
async def concord_with_samples(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> AsyncIterator[Concord]:
    settings = emulator_settings(discord_emu, sqlite_url(tmp_path), owner_ids=[world.admin.id])
    async with running_bot(discord_emu, settings, extensions=TEST_EXTENSIONS) as bot:
        yield bot


def help_lines(itx: object) -> dict[str, str]:
    original = itx.original  # type: ignore[attr-defined]
    assert original is not None
    [embed] = original["embeds"]
    return {field["name"]: field["value"] for field in embed["fields"]}


async def test_logs_in_and_syncs_commands(discord_emu: DiscordEmulator, concord: Concord) -> None:
    paths = [request.path for request in discord_emu.requests]
    assert "/users/@me" in paths
    assert "/oauth2/applications/@me" in paths
    assert "/gateway/bot" in paths  # AutoShardedBot asks for the shard count
    synced = {command["name"]: command for command in discord_emu.global_commands}
    assert {"help", "ping"} <= set(synced)
    # Usable in servers, the bot's DMs and (user installs) private channels.
    assert sorted(synced["ping"]["contexts"]) == [0, 1, 2]
    assert sorted(synced["ping"]["integration_types"]) == [0, 1]
    assert concord.is_ready()
    assert len(concord.guilds) == 1


async def test_ping_shows_gateway_and_database_latency(
    discord_emu: DiscordEmulator, world: World, concord: Concord
) -> None:
    itx = await discord_emu.run_command(world.member, "ping", channel=world.general)
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    content = itx.original["content"]
    assert re.fullmatch(r"Pong! Gateway: (\d+ ms|unknown yet) · Database: \d+\.\d ms", content), content


async def test_ping_in_a_dm(discord_emu: DiscordEmulator, world: World, concord: Concord) -> None:
    itx = await discord_emu.run_command(world.member, "ping", channel=discord_emu.dm_channel(world.member))
    await itx.wait_for_response(timeout=5)
    assert itx.original["content"].startswith("Pong!")


async def test_help_lists_what_a_member_may_use_grouped_by_capability(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    itx = await discord_emu.run_command(world.member, "help", channel=world.general)
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    groups = help_lines(itx)
    assert "`/help`" in groups["General"] and "`/ping`" in groups["General"]
    assert "`/boom`" in groups["Samples"]
    assert "/admin-only" not in groups["Samples"]  # needs Manage Server
    assert "/owner-only" not in groups["Samples"]


async def test_help_for_an_admin_and_owner_shows_their_commands(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    itx = await discord_emu.run_command(world.admin, "help", channel=world.general)
    await itx.wait_for_response(timeout=5)
    samples = help_lines(itx)["Samples"]
    assert "`/admin-only`" in samples and "`/owner-only`" in samples


async def test_help_in_a_dm_hides_server_only_commands(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    itx = await discord_emu.run_command(world.admin, "help", channel=discord_emu.dm_channel(world.admin))
    await itx.wait_for_response(timeout=5)
    groups = help_lines(itx)
    assert "/admin-only" not in groups["Samples"]
    assert "`/ping`" in groups["General"]
    # ...and Discord itself does not offer it there: it is synced for servers only.
    [synced] = [c for c in discord_emu.global_commands if c["name"] == "admin-only"]
    assert synced["contexts"] == [0]


async def test_runtime_permission_check_refuses_non_admins(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    # default_permissions is only a hint a server admin can change; the runtime check still refuses.
    itx = await discord_emu.run_command(
        world.member, "admin-only", channel=world.general, ignore_default_permissions=True
    )
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    assert itx.original["content"] == "You need the Manage Server permission to use this."


async def test_unexpected_error_shows_a_correlation_id_and_is_logged(
    discord_emu: DiscordEmulator,
    world: World,
    concord_with_samples: Concord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.discordkit.tree")
    itx = await discord_emu.run_command(world.member, "boom", channel=world.general)
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    content = itx.original["content"]
    match = re.search(r"error id `([0-9a-f]{8})`", content)
    assert match, content
    assert "kaboom" not in content and "Traceback" not in content
    [record] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert record.exc_info is not None and "kaboom" in str(record.exc_info[1])


async def test_error_after_defer_arrives_as_a_followup(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    itx = await discord_emu.run_command(world.member, "late-boom", channel=world.general)
    await itx.wait_for(lambda handle: bool(handle.followups), timeout=5)
    assert itx.response_type == 5
    assert "error id" in itx.followups[0]["content"]


async def test_domain_error_is_explained_in_one_sentence(
    discord_emu: DiscordEmulator, world: World, concord_with_samples: Concord
) -> None:
    itx = await discord_emu.run_command(world.member, "refuse", channel=discord_emu.dm_channel(world.member))
    await itx.wait_for_response(timeout=5)
    assert itx.ephemeral
    assert itx.original["content"] == "That prompt is too long: the limit is 1000 characters."


async def test_a_broken_extension_does_not_stop_the_others(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = emulator_settings(discord_emu, sqlite_url(tmp_path))
    async with running_bot(discord_emu, settings, extensions=("tests.e2e.broken_cog", *EXTENSIONS)) as bot:
        assert set(bot.failed_extensions) == {"tests.e2e.broken_cog"}
        itx = await discord_emu.run_command(world.member, "ping", channel=world.general)
        await itx.wait_for_response(timeout=5)
        assert itx.original["content"].startswith("Pong!")
    assert any("broken_cog failed to load" in r.getMessage() for r in caplog.records)


async def test_chat_without_any_provider_says_so_in_one_sentence(
    discord_emu: DiscordEmulator, world: World, concord: Concord
) -> None:
    itx = await discord_emu.run_command(world.member, "chat", {"prompt": "hello?"}, channel=world.general)
    await itx.wait_for(lambda handle: bool(handle.original and handle.original["content"]), timeout=5)
    assert itx.original["content"].startswith("No configured AI provider offers chat")
    assert "Traceback" not in itx.original["content"]
