"""Result embeds go through the send-data schema: long model text is clipped to Discord's limits."""

from __future__ import annotations

import re
from pathlib import Path

import discord

from bot.discordkit.embeds import result_embed
from bot.services import send_data as schema


def test_long_text_is_clipped_to_every_limit() -> None:
    embed = result_embed(
        title="t" * 300,
        description="d" * 5000,
        fields=[("n" * 300, "v" * 2000, False)] * 30,
        footer="f" * 100,
        author="a" * 300,
    )
    assert len(embed.title or "") == schema.TITLE_MAX and (embed.title or "").endswith("…")
    assert all(len(f.value or "") <= schema.FIELD_VALUE_MAX for f in embed.fields)
    assert len(embed.description or "") == schema.DESCRIPTION_MAX
    assert len(embed) == schema.EMBED_TOTAL_MAX  # fields fill what the description left, the last clipped
    assert 0 < len(embed.fields) < 30


def test_fields_and_images_convert() -> None:
    embed = result_embed(
        title="Image", colour=0x123456, image_url="https://x.test/a.png", fields=[("Model", "flux", True)]
    )
    assert embed.to_dict()["image"]["url"] == "https://x.test/a.png"
    assert embed.colour is not None and embed.colour.value == 0x123456
    assert [(f.name, f.value, f.inline) for f in embed.fields] == [("Model", "flux", True)]


def test_a_footer_at_its_limit_still_leaves_a_valid_embed() -> None:
    embed = result_embed(title="t" * 300, description="d" * 5000, footer="f" * 3000, author="a" * 300)
    assert len(embed) <= schema.EMBED_TOTAL_MAX
    assert len(embed.footer.text or "") == schema.FOOTER_MAX


def test_a_discord_colour_is_accepted_as_is() -> None:
    embed = result_embed(title="Models", colour=discord.Colour.blurple())
    assert embed.colour == discord.Colour.blurple()


def test_every_embed_in_the_bot_is_built_through_the_schema() -> None:
    # Issue 4, item 5: cogs and discordkit build embeds with result_embed (or from a payload); only the
    # schema-to-discord converter itself constructs discord.Embed.
    root = Path(__file__).resolve().parents[2]
    converter = root / "bot" / "discordkit" / "embeds.py"
    direct = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("cogs", "bot")
        for path in sorted((root / folder).rglob("*.py"))
        if path != converter
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"discord\.Embed(\(|\.from_dict)|from discord import .*\bEmbed\b", line)
    ]
    assert direct == []
