"""Images end to end: /imagine, /flux and their buttons, with the real bot against both emulators."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.services.quotas import Feature
from tests.e2e.harness import (
    World,
    custom_ids,
    emulator_settings,
    running_bot,
    sqlite_url,
    write_providers_file,
)
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import BadBase64, GatewayEmulator, ServerError, WrongShape

Json = dict[str, Any]
LOADING = 1 << 7
EPHEMERAL = 1 << 6


@contextlib.asynccontextmanager
async def gateways(*profiles: str) -> AsyncIterator[list[GatewayEmulator]]:
    started = [await GatewayEmulator(p).start() for p in profiles]
    try:
        yield started
    finally:
        for g in started:
            await g.close()


def image_settings(emu: DiscordEmulator, folder: Path, gws: list[GatewayEmulator], **overrides: Any) -> Any:
    providers = write_providers_file(folder, gws, first_byte_timeout=5, idle_timeout=5, retries=0)
    values: dict[str, Any] = {"providers_file": providers, "fetch_allowlist": ["127.0.0.1"]}
    values.update(overrides)
    return emulator_settings(emu, sqlite_url(folder), **values)


def finished(itx: Any) -> bool:
    message = itx.original
    if message is None or message["flags"] & LOADING:
        return False
    return not (message.get("content") or "").startswith(("🎨", "👀"))


async def command(emu: DiscordEmulator, who: Any, name: str, where: Any, **options: Any) -> Any:
    itx = await emu.run_command(who, name, options=options, channel=where)
    await itx.wait_for(finished, timeout=10)
    return itx


async def press(emu: DiscordEmulator, who: Any, message: Json, prefix: str) -> Any:
    [custom_id] = [c for c in custom_ids(message) if c.startswith(prefix)]
    itx = await emu.press_button(who, message, custom_id)
    await itx.wait_for_response(timeout=5)
    return itx


def fields(message: Json) -> dict[str, str]:
    [embed] = message["embeds"]
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


def attachments_are_images(emu: DiscordEmulator, message: Json) -> list[tuple[int, int]]:
    sizes = []
    for attachment in message["attachments"]:
        with Image.open(io.BytesIO(emu.attachment_bytes(attachment))) as image:
            sizes.append(image.size)
    return sizes


# --- /imagine on each profile that offers it -----------------------------------------------------


async def test_imagine_on_airforce_posts_images_with_embed_and_buttons(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu, world.member, "imagine", world.general, prompt="a lighthouse", size="16:9", count=2
        )
        assert itx.response_type == 5 and not itx.ephemeral
        message = itx.original
        assert len(message["attachments"]) == 2
        assert attachments_are_images(discord_emu, message) == [(16, 16), (16, 16)]
        info = fields(message)
        assert info["Model"] == "flux" and info["Size"] == "16:9"
        assert info["Requested by"] == f"<@{world.member.id}>"
        seed = int(info["Seed"])
        assert message["embeds"][0]["description"] == "a lighthouse"
        requests = gws[0].requests_for("imagine")
        assert sorted(int(r.query["seed"]) for r in requests) == [seed, seed + 1]
        assert {r.query["size"] for r in requests} == {"16:9"}
        ids = custom_ids(message)
        for action in ("regen", "var", "edit", "info", "del", "open"):
            assert any(i.startswith(f"concord:img:{action}:{world.member.id}:") for i in ids), action


async def test_imagine_on_anyai_sdxl_and_option_checks_per_model(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with gateways("anyai") as gws, running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)):
        itx = await command(
            discord_emu,
            world.member,
            "imagine",
            world.general,
            prompt="a cat",
            model="sdxl",
            width=512,
            height=768,
            steps=20,
            negative_prompt="dogs",
        )
        assert len(itx.original["attachments"]) == 1
        [request] = gws[0].requests_for("imagine")
        assert request.query["width"] == "512" and request.query["negative_prompt"] == "dogs"
        assert fields(itx.original)["Size"] == "512×768"
        # pluto takes only prompt and negative_prompt: width is refused by name, nothing is sent.
        refused = await discord_emu.run_command(
            world.member, "imagine", {"prompt": "x", "model": "pluto", "width": 512}, channel=world.general
        )
        await refused.wait_for_response()
        assert refused.ephemeral and "`width`" in refused.original["content"]
        # An airforce ratio on sdxl is refused too.
        refused = await discord_emu.run_command(
            world.member, "imagine", {"prompt": "x", "model": "sdxl", "size": "16:9"}, channel=world.general
        )
        await refused.wait_for_response()
        assert "`size`" in refused.original["content"]
        assert len(gws[0].requests_for("imagine")) == 1


async def test_imagine_dalle_through_generations_on_openai(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("openai") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu, world.member, "imagine", world.general, prompt="a robot", size="1792x1024", count=2
        )
        assert len(itx.original["attachments"]) == 2
        requests = gws[0].requests_for("images")
        assert [r.json["n"] for r in requests] == [1, 1]  # dall-e-3 draws one per request
        assert requests[0].json["size"] == "1792x1024"
        assert fields(itx.original)["Seed"] == "—"


async def test_dalle3_quality_is_sent_in_the_body_and_refused_for_other_models(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("openai", "anyai") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu,
            world.member,
            "imagine",
            world.general,
            prompt="a robot",
            model="dall-e-3",
            quality="hd",
        )
        assert len(itx.original["attachments"]) == 1
        [request] = gws[0].requests_for("images")
        assert request.json["quality"] == "hd" and request.json["model"] == "dall-e-3"
        refused = await discord_emu.run_command(
            world.member, "imagine", {"prompt": "x", "model": "sdxl", "quality": "hd"}, channel=world.general
        )
        await refused.wait_for_response()
        assert refused.ephemeral and "`quality`" in refused.original["content"]
        assert "sdxl" in refused.original["content"]
        assert gws[1].requests_for("imagine") == [] and len(gws[0].requests_for("images")) == 1


async def test_fast_imagine_calls_imagine2_on_airforce_only(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce", "anyai") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu, world.member, "imagine", world.general, prompt="a kite", size="1:1", fast=True
        )
        assert len(itx.original["attachments"]) == 1
        [request] = gws[0].requests_for("imagine2")
        assert request.method == "GET" and request.path.endswith("/imagine2")
        assert request.query["prompt"] == "a kite" and request.query["size"] == "1:1"
        assert gws[0].requests_for("imagine") == []
        # Regenerate repeats the fast endpoint.
        regen = await press(discord_emu, world.member, itx.original, "concord:img:regen:")
        await regen.wait_for(finished, timeout=10)
        assert len(gws[0].requests_for("imagine2")) == 2
        refused = await discord_emu.run_command(
            world.member, "imagine", {"prompt": "x", "model": "sdxl", "fast": True}, channel=world.general
        )
        await refused.wait_for_response()
        assert refused.ephemeral and "`fast`" in refused.original["content"]
        assert gws[1].requests_for("imagine") == []


async def test_model_autocomplete_lists_imagine_models(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        result = await discord_emu.autocomplete(world.member, "imagine", "model", "real", world.general)
        assert [c["value"] for c in result][:1] == ["flux-realism"]


# --- /flux ----------------------------------------------------------------------------------------


async def test_flux_gallery_of_four_with_open_buttons(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(
            discord_emu, world.member, "flux", world.general, prompt="nebula", count=4, width=1024, height=768
        )
        message = itx.original
        assert len(message["attachments"]) == 4
        [request] = gws[0].requests_for("flux")
        assert request.json["n"] == 4 and request.json["width"] == 1024
        opens = [i for i in custom_ids(message) if i.startswith("concord:img:open:")]
        assert len(opens) == 4
        # Anyone may open one image of the gallery; it is shown privately, at full size.
        opened = await discord_emu.press_button(world.admin, message, opens[2])
        await opened.wait_for_response()
        assert opened.ephemeral
        assert opened.original["embeds"][0]["image"]["url"] == message["attachments"][2]["url"]


async def test_flux_sides_must_be_multiples_with_nearest_values_suggested(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await discord_emu.run_command(
            world.member, "flux", {"prompt": "x", "width": 1000, "height": 1000}, channel=world.general
        )
        await itx.wait_for_response()
        text = itx.original["content"]
        assert "width a multiple of 16 (nearest: 992 or 1008)" in text
        assert "height a multiple of 32 (nearest: 992 or 1024)" in text
        assert gws[0].requests_for("flux") == []


# --- result shapes and bad answers -------------------------------------------------------------------


async def test_url_results_are_fetched_through_the_guarded_fetcher(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("digicord") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        gw = gws[0]
        gw.inject("flux", WrongShape({"data": [{"url": f"{gw.url}/media/one.png"}]}))
        itx = await command(discord_emu, world.member, "flux", world.general, prompt="url please")
        assert len(itx.original["attachments"]) == 1
        assert [r.path for r in gw.requests_for("media")] == ["/media/one.png"]


async def test_a_provider_url_at_a_private_address_is_refused_with_retry(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with gateways("digicord") as gws:
        settings_ = image_settings(discord_emu, tmp_path, gws, fetch_allowlist=[])
        async with running_bot(discord_emu, settings_) as bot:
            gw = gws[0]
            gw.inject("flux", WrongShape({"data": [{"url": f"{gw.url}/media/secret.png"}]}))
            itx = await command(discord_emu, world.member, "flux", world.general, prompt="x")
            message = itx.original
            assert "private or reserved network address" in message["content"]
            assert message["attachments"] == [] and message["embeds"] == []
            assert any(i.startswith("concord:img:retry:") for i in custom_ids(message))
            assert gw.requests_for("media") == []
            # Nothing was produced, so the quota was given back.
            report = await bot.quotas.report(world.member.id, guild_id=world.guild.id)
            image = next(f for f in report.features if f.feature is Feature.IMAGE)
            assert all(w.used == 0 for w in image.windows)


@pytest.mark.parametrize(
    ("route", "fault", "png", "reason"),
    [
        ("flux", BadBase64(), None, "base64"),
        ("imagine", None, b"GIF87a but not really", "not an image"),
        ("imagine", None, b"\x89PNG\r\n\x1a\n" + b"broken" * 20, "not an image"),
        ("imagine", None, b"", "empty"),
    ],
)
async def test_broken_images_are_errors_the_user_reads(
    discord_emu: DiscordEmulator,
    world: World,
    tmp_path: Path,
    route: str,
    fault: Any,
    png: bytes | None,
    reason: str,
) -> None:
    profile = "digicord" if route == "flux" else "airforce"
    async with gateways(profile) as gws, running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)):
        if fault is not None:
            gws[0].inject(route, fault)
        if png is not None:
            gws[0].png = png
        itx = await command(discord_emu, world.member, route, world.general, prompt="x")
        message = itx.original
        assert message["attachments"] == []
        assert message["content"].startswith("⚠️") and reason in message["content"]
        assert "http" not in message["content"]


async def test_provider_failure_then_retry_draws_in_place(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        gws[0].inject("imagine", ServerError(502))
        itx = await command(discord_emu, world.member, "imagine", world.general, prompt="castle")
        failed = itx.original
        assert failed["content"] == "⚠️ Nothing was generated: the AI service had a server error (502)."
        # A stranger cannot retry someone else's request.
        stranger = await press(discord_emu, world.admin, failed, "concord:img:retry:")
        assert stranger.ephemeral and "Only" in stranger.original["content"]
        retry = await press(discord_emu, world.member, failed, "concord:img:retry:")
        assert retry.response_type == 6
        await retry.wait_for(lambda i: bool((i.original or {}).get("attachments")), timeout=10)
        assert retry.original["id"] == failed["id"]
        assert fields(retry.original)["Model"] == "flux"


async def test_quota_denial_before_any_provider_call(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)) as bot,
    ):
        for _ in range(20):
            await bot.quotas.consume(world.member.id, Feature.IMAGINE, guild_id=world.guild.id)
        itx = await command(discord_emu, world.member, "imagine", world.general, prompt="x")
        assert "used your imagine allowance" in itx.original["content"]
        assert itx.original["attachments"] == []
        assert gws[0].requests_for("imagine") == []


async def test_switched_off_capability_refuses(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)) as bot,
    ):
        await bot.guild_config.set_capability(world.guild.id, world.admin.id, "imagine", False)
        itx = await discord_emu.run_command(world.member, "imagine", {"prompt": "x"}, channel=world.general)
        await itx.wait_for_response()
        assert itx.ephemeral and "switched imagine off" in itx.original["content"]
        assert gws[0].requests_for("imagine") == []


def noisy_png(side: int) -> bytes:
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=0)
    return out.getvalue()


async def test_results_over_the_upload_limit_are_reencoded_smaller(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    big = noisy_png(1900)
    limit = world.guild.upload_limit
    assert len(big) > limit
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        gws[0].png = big
        itx = await command(discord_emu, world.member, "imagine", world.general, prompt="noise")
        [attachment] = itx.original["attachments"]
        assert attachment["filename"] == "image_1.jpg"
        assert attachment["size"] <= limit
        assert attachments_are_images(discord_emu, itx.original)[0][0] > 0


# --- buttons ----------------------------------------------------------------------------------------


async def test_every_button_and_a_strangers_press(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with (
        gateways("airforce") as gws,
        running_bot(discord_emu, image_settings(discord_emu, tmp_path, gws)),
    ):
        itx = await command(discord_emu, world.member, "imagine", world.general, prompt="a fox", count=2)
        result = itx.original
        seed = fields(result)["Seed"]
        # Strangers may not Regenerate, make Variations, Edit or Delete; they are told privately.
        stranger = _stranger(discord_emu, world)
        for prefix in ("concord:img:regen:", "concord:img:var:", "concord:img:edit:", "concord:img:del:"):
            refused = await press(discord_emu, stranger, result, prefix)
            assert refused.ephemeral and f"Only <@{world.member.id}>" in refused.original["content"], prefix
        calls = len(gws[0].requests_for("imagine"))
        assert calls == 2
        # Details: anyone, privately, with the full settings.
        details = await press(discord_emu, world.admin, result, "concord:img:info:")
        assert details.ephemeral
        assert fields(details.original)["Images"] == "2" and fields(details.original)["Seed"] == seed
        # Regenerate: same settings, new seed, a new message.
        regen = await press(discord_emu, world.member, result, "concord:img:regen:")
        await regen.wait_for(finished, timeout=10)
        assert regen.original["id"] != result["id"] and len(regen.original["attachments"]) == 2
        assert fields(regen.original)["Seed"] != seed
        assert regen.original["embeds"][0]["description"] == "a fox"
        # Variations: as many again with new seeds, a new message.
        variations = await press(discord_emu, world.member, result, "concord:img:var:")
        await variations.wait_for(finished, timeout=10)
        assert len(variations.original["attachments"]) == 2
        # Edit prompt: a form prefilled with the prompt, then a new generation.
        edit = await press(discord_emu, world.member, result, "concord:img:edit:")
        assert edit.response_type == 9
        field = edit.modal["components"][0]["components"][0]
        assert field["value"] == "a fox"
        submitted = await discord_emu.submit_modal(
            world.member, edit, edit.modal["custom_id"], {field["custom_id"]: "a fox in snow"}
        )
        await submitted.wait_for(finished, timeout=10)
        assert submitted.original["embeds"][0]["description"] == "a fox in snow"
        assert gws[0].requests_for("imagine")[-1].query["prompt"] == "a fox in snow"
        # Delete: the requester may.
        deleted = await press(discord_emu, world.member, result, "concord:img:del:")
        await deleted.wait_for(lambda i: bool(i.followups) or bool((i.original or {}).get("content")))
        assert all(m["id"] != result["id"] for m in discord_emu.messages(world.general))


def _stranger(emu: DiscordEmulator, world: World) -> Any:
    stranger = emu.create_user("carol")
    world.guild.add_member(stranger)
    return stranger


async def test_a_moderator_may_delete_and_buttons_work_after_a_restart(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    async with gateways("airforce") as gws:
        settings_ = image_settings(discord_emu, tmp_path, gws)
        async with running_bot(discord_emu, settings_):
            itx = await command(discord_emu, world.member, "imagine", world.general, prompt="owl", count=1)
            first = itx.original
            other = await command(discord_emu, world.member, "imagine", world.general, prompt="bat")
            second = other.original
        async with running_bot(discord_emu, settings_):
            details = await press(discord_emu, world.member, first, "concord:img:info:")
            assert details.original["embeds"][0]["description"] == "owl"
            regen = await press(discord_emu, world.member, first, "concord:img:regen:")
            await regen.wait_for(finished, timeout=10)
            assert regen.original["embeds"][0]["description"] == "owl"
            assert len(regen.original["attachments"]) == 1
            # Manage Messages (the admin has it as the guild's owner) may delete someone else's image.
            deleted = await press(discord_emu, world.admin, second, "concord:img:del:")
            assert deleted.ephemeral
            await deleted.wait_for(lambda i: bool(i.followups))
            assert all(m["id"] != second["id"] for m in discord_emu.messages(world.general))
