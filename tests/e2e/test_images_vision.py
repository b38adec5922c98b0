"""Vision end to end: /vision, the "Describe image" menu and the prompt mode, against both emulators."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from bot.services.quotas import Feature, QuotaExceeded
from bot.store.models import ConversationMessage, QuotaUsage
from tests.e2e.harness import World, custom_ids, final_from, running_bot, until
from tests.e2e.test_images import command, finished, gateways, image_settings, press
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import ServerError, media

PNG = media.png(32, 32)


def noisy_png(side: int) -> bytes:
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def test_vision_through_chat_with_an_image_part(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu,
            world.member,
            "vision",
            world.general,
            image=("cat.png", PNG, "image/png"),
            question="What colour is it?",
        )
        assert itx.response_type == 5
        [embed] = itx.original["embeds"]
        assert embed["description"] == gws[0].vision_reply
        assert {"name": "Question", "value": "What colour is it?", "inline": False} in embed["fields"]
        [request] = gws[0].requests_for("chat")
        parts = request.json["messages"][-1]["content"]
        assert parts[0] == {"type": "text", "text": "What colour is it?"}
        image_part = parts[1]["image_url"]
        url = image_part if isinstance(image_part, str) else image_part["url"]
        assert url.startswith("data:image/png;base64,")


async def test_vision_through_the_url_endpoint(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu, world.member, "vision", world.general, image=("cat.png", PNG, "image/png")
        )
        assert itx.original["embeds"][0]["description"] == gws[0].vision_reply
        [request] = gws[0].requests_for("vision")
        assert request.query["url"].startswith(f"http://127.0.0.1:{discord_emu.port}/attachments/")


async def test_prompt_mode_offers_a_button_that_draws_it(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with gateways("digicord", "airforce") as gws:
        gws[0].vision_reply = "A watercolour fox in a snowy forest at dusk"
        async with running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)):
            itx = await command(
                discord_emu,
                world.member,
                "vision",
                world.general,
                image=("fox.png", PNG, "image/png"),
                mode="prompt",
            )
            offered = itx.original
            assert offered["embeds"][0]["description"] == "A watercolour fox in a snowy forest at dusk"
            assert (
                "recreate this image"
                in gws[0].requests_for("chat")[0].json["messages"][-1]["content"][0]["text"]
            )
            [run_id] = [i for i in custom_ids(offered) if i.startswith("concord:img:run:")]
            stranger = await press(discord_emu, world.admin, offered, "concord:img:run:")
            assert stranger.ephemeral and "Only" in stranger.original["content"]
            drawn = await discord_emu.press_button(world.member, offered, run_id)
            await drawn.wait_for(finished, timeout=10)
            assert drawn.original["embeds"][0]["description"] == "A watercolour fox in a snowy forest at dusk"
            assert len(drawn.original["attachments"]) == 1
            [request] = gws[1].requests_for("imagine")
            assert request.query["prompt"] == "A watercolour fox in a snowy forest at dusk"


async def test_describe_image_menu_on_a_message(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        posted = await discord_emu.send_message(
            world.member, world.general, "look", attachments=[("sky.png", PNG, "image/png")]
        )
        itx = await discord_emu.run_message_command(world.admin, "Describe image", posted, world.general)
        await itx.wait_for(finished, timeout=10)
        assert itx.original["embeds"][0]["description"] == gws[0].vision_reply
        # A message with no image gets a sentence, not silence.
        plain = await discord_emu.send_message(world.member, world.general, "no pictures here")
        itx = await discord_emu.run_message_command(world.admin, "Describe image", plain, world.general)
        await itx.wait_for_response()
        assert itx.ephemeral and "has no image attached" in itx.original["content"]
        assert len(gws[0].requests_for("chat")) == 1


async def test_non_images_and_oversized_files_are_refused_before_download(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    big = noisy_png(64)
    async with gateways("digicord") as gws:
        settings_ = image_settings(discord_emu, tmp_path, gws, image_max_bytes=len(big) - 1)
        async with running_bot(discord_emu, settings_):
            itx = await discord_emu.run_command(
                world.member,
                "vision",
                {"image": ("notes.txt", b"hello", "text/plain")},
                channel=world.general,
            )
            await itx.wait_for_response()
            assert itx.ephemeral and "`notes.txt` is not an image" in itx.original["content"]
            itx = await discord_emu.run_command(
                world.member, "vision", {"image": ("big.png", big, "image/png")}, channel=world.general
            )
            await itx.wait_for_response()
            assert itx.ephemeral and "the most I read is" in itx.original["content"]
            # A file that claims to be a PNG but is not is caught by its first bytes after download.
            itx = await command(
                discord_emu,
                world.member,
                "vision",
                world.general,
                image=("fake.png", b"<html>nope</html>", "image/png"),
            )
            assert itx.original["content"].startswith("⚠️")
            assert "image" in itx.original["content"]
            assert gws[0].requests_for("chat") == []


async def test_an_image_in_a_chat_mention_is_answered_by_a_vision_model_and_remembered(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)) as bot,
    ):
        me = discord_emu.bot_user.id
        await discord_emu.send_message(
            world.member, world.general, f"<@{me}> what is this?", attachments=[("cat.png", PNG, "image/png")]
        )
        answer = await discord_emu.wait_for_message(world.general, final_from(discord_emu))
        assert answer["content"] == gws[0].vision_reply
        [request] = gws[0].requests_for("chat")
        parts = request.json["messages"][-1]["content"]
        assert parts[0] == {"type": "text", "text": "what is this?"}
        async with bot.db_sessions() as session:
            features = set((await session.scalars(select(QuotaUsage.feature))).all())
            stored = (await session.scalars(select(ConversationMessage.content))).all()
        assert features == {"vision"}
        assert stored == ["what is this?\n[attached image: cat.png]", gws[0].vision_reply]
        # A plain follow-up is ordinary chat, and its context carries the exchange about the image.
        await discord_emu.send_message(world.member, world.general, f"<@{me}> and its name?")
        await until(lambda: len(gws[0].requests_for("chat")) == 2)
        context = str(gws[0].requests_for("chat")[-1].json["messages"])
        assert "[attached image: cat.png]" in context and gws[0].vision_reply in context


async def test_an_oversized_image_in_a_mention_is_refused_before_download(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        me = discord_emu.bot_user.id
        big = noisy_png(64)
        await discord_emu.send_message(
            world.member, world.general, f"<@{me}> look", attachments=[("huge.png", big * 2000, "image/png")]
        )
        refusal = await discord_emu.wait_for_message(world.general, lambda m: m["author"]["id"] == str(me))
        assert "MiB" in refusal["content"]
        assert gws[0].requests_for("chat") == []
        assert not [r for r in discord_emu.requests if "/attachments/" in r.path]


async def test_vision_failure_shows_retry_and_retry_answers(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with gateways("digicord") as gws:
        settings_ = image_settings(discord_emu, tmp_path, gws)
        async with running_bot(discord_emu, settings_) as bot:
            gws[0].inject("chat", ServerError(502))
            itx = await command(
                discord_emu,
                world.member,
                "vision",
                world.general,
                image=("cat.png", PNG, "image/png"),
                question="What is it?",
            )
            failed = itx.original
            assert failed["content"].startswith("⚠️") and "http" not in failed["content"]
            assert failed["embeds"] == []
            [retry_id] = [i for i in custom_ids(failed) if i.startswith("concord:vision:retry:")]
            assert retry_id.startswith(f"concord:vision:retry:{world.member.id}:")
            # Nothing was answered, so the quota was given back.
            report = await bot.quotas.report(world.member.id, guild_id=world.guild.id)
            vision = next(f for f in report.features if f.feature is Feature.VISION)
            assert all(w.used == 0 for w in vision.windows)
        # The button outlives a restart; a stranger's press is refused without a call.
        async with running_bot(discord_emu, settings_) as bot:
            stranger = await press(discord_emu, world.admin, failed, "concord:vision:retry:")
            assert stranger.ephemeral and f"Only <@{world.member.id}>" in stranger.original["content"]
            assert len(gws[0].requests_for("chat")) == 1
            retry = await press(discord_emu, world.member, failed, "concord:vision:retry:")
            assert retry.response_type == 6
            await retry.wait_for(lambda i: bool((i.original or {}).get("embeds")), timeout=10)
            answered = retry.original
            assert answered["id"] == failed["id"]
            [embed] = answered["embeds"]
            assert embed["description"] == gws[0].vision_reply
            assert {"name": "Question", "value": "What is it?", "inline": False} in embed["fields"]
            assert custom_ids(answered) == []
            [_, request] = gws[0].requests_for("chat")
            assert request.json["messages"][-1]["content"][0]["text"] == "What is it?"
            # The retry took quota again before its call.
            report = await bot.quotas.report(world.member.id, guild_id=world.guild.id)
            vision = next(f for f in report.features if f.feature is Feature.VISION)
            assert any(w.used == 1 for w in vision.windows)


async def test_vision_retry_is_checked_against_quota_before_the_call(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)) as bot,
    ):
        gws[0].inject("chat", ServerError(502))
        itx = await command(
            discord_emu, world.member, "vision", world.general, image=("cat.png", PNG, "image/png")
        )
        failed = itx.original
        for _ in range(200):
            try:
                await bot.quotas.consume(world.member.id, Feature.VISION, guild_id=world.guild.id)
            except QuotaExceeded:
                break
        retry = await press(discord_emu, world.member, failed, "concord:vision:retry:")
        await retry.wait_for(lambda i: "allowance" in ((i.original or {}).get("content") or ""), timeout=10)
        assert len(gws[0].requests_for("chat")) == 1
