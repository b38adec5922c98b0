"""Every interaction shape round-trips between the emulator and the real discord.py command tree."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession

from tests.emulators.discord_emulator import DiscordEmulator

from .conftest import World
from .probe_bot import ProbeBot


async def test_slash_command_reply_is_seen_in_channel(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    itx = await emu.run_command(world.bob, "ping", channel=world.general)
    await itx.wait_for_response()
    assert itx.response_type == 4 and not itx.ephemeral
    assert itx.original is not None and itx.original["content"] == "pong"
    assert itx.original["interaction_metadata"]["user"]["id"] == str(world.bob.id)
    assert [m["content"] for m in emu.messages(world.general)] == ["pong"]
    # Discord echoes the response to the bot as MESSAGE_CREATE, like any message.
    received = await bot.wait_for_received(1)
    assert received[0].content == "pong" and received[0].interaction_metadata is not None


async def test_every_option_type_is_typed_and_resolved(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    itx = await emu.run_command(
        world.bob,
        "echo",
        options={
            "text": "hi",
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "who": world.alice,
            "where": world.general,
            "role": world.mods,
            "thing": world.mods,
            "size": "large",
            "file": ("notes.txt", b"file body", "text/plain"),
        },
        channel=world.general,
    )
    await itx.wait_for_response()
    assert itx.original is not None
    assert itx.original["content"] == (
        "text=hi count=3 ratio=0.5 flag=True who=alice where=general role=Mods thing=Mods size=large "
        "file=notes.txt:b'file body' admin=False manage=True ctx=True"
    )
    sent = itx.payload["data"]
    assert sent["resolved"]["attachments"]
    assert {o["name"]: o["type"] for o in sent["options"]}["file"] == 11


async def test_schema_mismatches_fail_the_test_not_the_bot(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    with pytest.raises(AssertionError, match="not synced"):
        await emu.run_command(world.bob, "nope", channel=world.general)
    with pytest.raises(AssertionError, match="unknown option"):
        await emu.run_command(world.bob, "ping", options={"extra": 1}, channel=world.general)
    with pytest.raises(AssertionError, match="is an integer"):
        await emu.run_command(
            world.bob, "config set", options={"key": "a", "value": "x"}, channel=world.general
        )
    with pytest.raises(AssertionError, match="outside"):
        await emu.run_command(
            world.bob,
            "echo",
            options={
                "text": "t",
                "count": 11,
                "ratio": 1.0,
                "flag": False,
                "who": world.bob,
                "where": world.general,
                "role": world.mods,
                "thing": world.bob,
            },
            channel=world.general,
        )
    with pytest.raises(AssertionError, match="required option 'key'"):
        await emu.run_command(world.bob, "config show", channel=world.general)
    with pytest.raises(AssertionError, match="would not offer /where"):
        await emu.run_command(world.bob, "where", channel=emu.dm_channel(world.bob))


async def test_subcommands_and_default_permissions(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    shown = await emu.run_command(world.bob, "config show", options={"key": "model"}, channel=world.general)
    await shown.wait_for_response()
    assert shown.ephemeral and shown.original is not None and shown.original["content"] == "model = default"

    carol = emu.create_user("carol")
    world.guild.add_member(carol)
    with pytest.raises(AssertionError, match="default_member_permissions"):
        await emu.run_command(carol, "admin", channel=world.general)
    # Bob's Mods role has MANAGE_GUILD; a server admin could also open the command to everyone.
    allowed = await emu.run_command(world.bob, "admin", channel=world.general)
    forced = await emu.run_command(carol, "admin", channel=world.general, ignore_default_permissions=True)
    for itx in (allowed, forced):
        await itx.wait_for_response()
        assert itx.original is not None and itx.original["content"] == "admin ok"
    changed = await emu.run_command(
        carol, "config set", options={"key": "a", "value": 1}, channel=world.general
    )
    await changed.wait_for_response()
    assert changed.original is not None and changed.original["content"] == "a := 1"


async def test_defer_then_followups_and_original_edit(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    itx = await emu.run_command(world.bob, "slow", channel=world.thread)
    await itx.wait_for_response()
    assert itx.response_type == 5
    await itx.wait_for(lambda i: i.original is not None and i.original["content"] == "first result (edited)")
    followups = itx.followups
    assert [m["content"] for m in followups] == ["first result (edited)", "second result"]
    # After a defer the first followup replaces the "thinking" message.
    assert followups[0]["id"] == itx.original["id"]  # type: ignore[index]
    assert followups[1]["attachments"][0]["filename"] == "probe.py"
    assert [m["content"] for m in emu.messages(world.thread)] == ["first result (edited)", "second result"]


async def test_ephemeral_replies_stay_out_of_the_channel(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    itx = await emu.run_command(world.bob, "secret", channel=world.general)
    await itx.wait_for_response()
    assert itx.ephemeral and itx.original is not None and itx.original["flags"] & 64
    assert emu.messages(world.general) == []
    assert [m["content"] for m in emu.messages(world.general, include_ephemeral=True)] == ["shh"]

    deferred = await emu.run_command(world.bob, "slow", options={"ephemeral": True}, channel=world.general)
    await deferred.wait_for(lambda i: len(i.followups) == 2)
    assert deferred.ephemeral
    assert all(m["flags"] & 64 for m in deferred.followups[:1])


async def test_modal_round_trip(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    itx = await emu.run_command(world.bob, "feedback", channel=world.general)
    await itx.wait_for_response()
    assert itx.response_type == 9 and itx.modal is not None and itx.modal["title"] == "Feedback"
    with pytest.raises(AssertionError, match="no field"):
        await emu.submit_modal(world.bob, itx, itx.modal["custom_id"], {"nope": "x"})
    submitted = await emu.submit_modal(world.bob, itx, itx.modal["custom_id"], {"feedback_text": "great"})
    await submitted.wait_for_response()
    assert submitted.original is not None and submitted.original["content"] == "thanks: great (no mood)"


async def test_button_updates_the_message(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    itx = await emu.run_command(world.bob, "vote", channel=world.general)
    await itx.wait_for_response()
    message = itx.original
    assert message is not None and message["components"]
    pressed = await emu.press_button(world.alice, message, "vote:yes")
    await pressed.wait_for_response()
    assert pressed.response_type == 7
    assert emu.messages(world.general)[0]["content"] == "voted yes by alice"
    assert emu.messages(world.general)[0]["components"] == []
    with pytest.raises(AssertionError, match="no component"):
        await emu.press_button(world.alice, message, "vote:ask")


async def test_button_can_open_a_modal(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    itx = await emu.run_command(world.bob, "vote", channel=world.general)
    await itx.wait_for_response()
    assert itx.original is not None
    asked = await emu.press_button(world.bob, itx.original, "vote:ask")
    await asked.wait_for_response()
    assert asked.response_type == 9 and asked.modal is not None


async def test_autocomplete_returns_the_bots_choices(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    result = await emu.autocomplete(world.bob, "chat", option="model", value="gp", channel=world.general)
    assert result.response_type == 8
    assert [c["name"] for c in result.choices or []] == ["gpt-4o", "gpt-4o-mini", "gpt-3.5"]
    assert [c["value"] for c in result] == ["gpt-4o", "gpt-4o-mini", "gpt-3.5"]
    with pytest.raises(AssertionError, match="no autocomplete"):
        await emu.autocomplete(world.bob, "chat", option="prompt", value="x", channel=world.general)


async def test_commands_in_a_dm(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    dm = emu.dm_channel(world.alice)
    itx = await emu.run_command(world.alice, "ping", channel=dm)
    await itx.wait_for_response()
    assert itx.payload["context"] == 1 and "user" in itx.payload and "guild_id" not in itx.payload
    assert [m["content"] for m in emu.messages(dm)] == ["pong"]


async def test_file_in_the_initial_response(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    itx = await emu.run_command(world.bob, "upload", channel=world.general)
    await itx.wait_for_response()
    assert itx.original is not None
    attachment = itx.original["attachments"][0]
    assert attachment["filename"] == "probe.txt"
    async with ClientSession() as session, session.get(attachment["url"]) as resp:
        assert (await resp.read()).startswith(b'"""A plain discord.py')


async def test_second_callback_and_expired_token(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    itx = await emu.run_command(world.bob, "ping", channel=world.general)
    await itx.wait_for_response()
    async with ClientSession() as session:
        url = f"{emu.api_base}/interactions/{itx.id}/{itx.token}/callback"
        async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
        hook = f"{emu.api_base}/webhooks/{emu.application_id}/{itx.token}"
        async with session.post(hook + "?wait=true", json={"content": "later"}) as resp:
            assert resp.status == 200
        itx.expire()
        async with session.post(hook, json={"content": "too late"}) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 10015
        async with session.patch(hook + "/messages/@original", json={"content": "x"}) as resp:
            assert resp.status == 404
    assert [m["content"] for m in itx.followups] == ["later"]


async def test_late_callback_is_unknown_interaction(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    emu.callback_deadline = 0.05
    emu.delay(r"/callback$", 0.1, times=1)
    itx = await emu.run_command(world.bob, "ping", channel=world.general)
    await asyncio.sleep(0.3)
    assert not itx.responded
    callback = emu.requests_to("POST", r"/callback$")[0]
    assert callback.status == 404 and callback.response["code"] == 10062
