"""Channel messages both ways: sends with files, edits, deletes, DMs, replies, reactions, history, pings."""

from __future__ import annotations

import io

import discord
import pytest

from tests.emulators.discord_emulator import DiscordEmulator

from .conftest import World
from .probe_bot import ProbeBot, VoteView


def text_channel(bot: ProbeBot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_send_with_files_then_edit(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    channel = text_channel(bot, world.general.id)
    sent = await channel.send(
        "report",
        files=[discord.File(io.BytesIO(b"alpha"), "a.txt"), discord.File(io.BytesIO(b"beta"), "b.bin")],
    )
    request = emu.requests_to("POST", r"^/channels/\d+/messages$")[-1]
    assert request.json["content"] == "report" and request.file_names == ["a.txt", "b.bin"]
    stored = emu.messages(world.general)[-1]
    assert [a["filename"] for a in stored["attachments"]] == ["a.txt", "b.bin"]
    assert emu.attachment_bytes(stored["attachments"][1]) == b"beta"
    assert await sent.attachments[0].read() == b"alpha"

    edited = await sent.edit(content="report v2", attachments=[sent.attachments[0]])
    assert edited.content == "report v2" and len(edited.attachments) == 1
    assert emu.messages(world.general)[-1]["content"] == "report v2"
    assert emu.messages(world.general)[-1]["edited_timestamp"] is not None

    await sent.delete()
    assert emu.messages(world.general) == []


async def test_dm_open_and_send(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    user = await bot.fetch_user(world.alice.id)
    await user.send("hello in private")
    dm = emu.dm_channel(world.alice)
    assert emu.dm_channels == [dm]
    assert [m["content"] for m in emu.messages(dm)] == ["hello in private"]
    assert "guild_id" not in emu.messages(dm)[0]

    emu.close_dms(world.bob)
    bob = await bot.fetch_user(world.bob.id)
    with pytest.raises(discord.Forbidden) as refused:
        await bob.send("hi")
    assert refused.value.code == 50007


async def test_user_messages_reach_on_message(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    first = await emu.send_message(
        world.alice,
        world.general,
        f"hey {emu.bot_user.mention}",
        attachments=[("pic.png", b"\x89PNG fake", "image/png")],
    )
    await emu.send_message(world.bob, world.general, "replying", reply_to=first)
    dm = emu.dm_channel(world.alice)
    await emu.send_message(world.alice, dm, "psst", attachments=[("doc.txt", b"secret")])
    received = await bot.wait_for_received(3)

    guild_msg, reply, dm_msg = received
    assert guild_msg.guild is not None and guild_msg.author.id == world.alice.id
    assert isinstance(guild_msg.author, discord.Member)
    assert bot.user in guild_msg.mentions
    assert guild_msg.attachments[0].filename == "pic.png"
    assert await guild_msg.attachments[0].read() == b"\x89PNG fake"
    assert reply.reference is not None and reply.reference.message_id == int(first["id"])
    assert isinstance(dm_msg.channel, discord.DMChannel) and dm_msg.guild is None
    assert await dm_msg.attachments[0].read() == b"secret"


async def test_wait_for_message_sees_the_bots_reply(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    channel = text_channel(bot, world.general.id)
    await emu.send_message(world.alice, world.general, "ask")
    await channel.send("answer")
    message = await emu.wait_for_message(world.general)
    assert message["content"] == "answer"
    anyone = await emu.wait_for_message(world.general, lambda m: m["content"] == "ask")
    assert anyone["author"]["id"] == str(world.alice.id)


async def test_reactions_typing_history(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    channel = text_channel(bot, world.general.id)
    first = await channel.send("one")
    await channel.send("two")
    await first.add_reaction("\N{THUMBS UP SIGN}")
    assert emu.messages(world.general)[0]["reactions"][0]["emoji"]["name"] == "\N{THUMBS UP SIGN}"
    async with channel.typing():
        pass
    assert emu.typing == [world.general.id]
    history = [m.content async for m in channel.history(limit=10)]
    assert history == ["two", "one"]


async def test_missing_permission_is_forbidden(emu: DiscordEmulator, world: World, bot: ProbeBot) -> None:
    world.general.set_permissions(world.guild.everyone, deny=1 << 11)  # SEND_MESSAGES
    bot_role = next(r for r in world.guild.roles.values() if r.managed)
    world.general.set_permissions(bot_role, deny=1 << 11)
    with pytest.raises(discord.Forbidden) as denied:
        await text_channel(bot, world.general.id).send("x")
    assert denied.value.code == 50013


async def test_allowed_mentions_decide_who_is_pinged(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    channel = text_channel(bot, world.general.id)
    text = f"@everyone {world.alice.mention} <@&{world.mods.id}>"
    await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
    quiet = emu.messages(world.general)[-1]
    assert quiet["_pinged"] == {"users": [], "roles": [], "everyone": False, "replied_user": False}
    assert quiet["mention_everyone"] is False and quiet["mentions"] == []

    await channel.send(text, allowed_mentions=discord.AllowedMentions(everyone=True, users=True, roles=False))
    loud = emu.messages(world.general)[-1]["_pinged"]
    # The bot lacks MENTION_EVERYONE, so Discord would not ping @everyone even though it was allowed.
    assert loud["users"] == [world.alice.id] and loud["everyone"] is False and loud["roles"] == []

    bot_role = next(r for r in world.guild.roles.values() if r.managed)
    bot_role.edit(permissions=bot_role.permissions | (1 << 17))
    await channel.send(text)  # no allowed_mentions at all: everything written pings
    assert emu.messages(world.general)[-1]["_pinged"]["everyone"] is True

    original = await emu.send_message(world.bob, world.general, "question")
    reference = discord.PartialMessage(channel=channel, id=int(original["id"]))
    await channel.send("answer", reference=reference, mention_author=False)
    assert emu.messages(world.general)[-1]["_pinged"]["replied_user"] is False


async def test_thread_messages_and_buttons_on_channel_messages(
    emu: DiscordEmulator, world: World, bot: ProbeBot
) -> None:
    await emu.send_message(world.alice, world.thread, "in the thread")
    [received] = await bot.wait_for_received(1)
    assert isinstance(received.channel, discord.Thread) and received.channel.parent_id == world.general.id

    sent = await text_channel(bot, world.general.id).send("pick", view=VoteView())
    pressed = await emu.press_button(world.bob, sent, "vote:yes")
    await pressed.wait_for_response()
    assert pressed.response_type == 7
    assert emu.messages(world.general)[-1]["content"] == "voted yes by bob"
    assert emu.messages(world.general.id)[-1]["components"] == []
