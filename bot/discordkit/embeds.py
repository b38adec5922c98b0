"""Discord objects from the send-data schema: every embed the bot sends is validated there first."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord

from bot.services import send_data as schema
from bot.services.send_data import EmbedSpec, SendDataPayload


def to_embed(spec: EmbedSpec) -> discord.Embed:
    embed = discord.Embed(title=spec.title, description=spec.description, url=spec.url, colour=spec.color)
    if spec.image and spec.image.url:
        embed.set_image(url=spec.image.url)
    if spec.thumbnail and spec.thumbnail.url:
        embed.set_thumbnail(url=spec.thumbnail.url)
    if spec.author and spec.author.name:
        embed.set_author(name=spec.author.name, url=spec.author.url, icon_url=spec.author.icon_url)
    if spec.footer and spec.footer.text:
        embed.set_footer(text=spec.footer.text, icon_url=spec.footer.icon_url)
    for field in spec.fields:
        embed.add_field(name=field.name, value=field.value, inline=field.inline)
    return embed


def to_view(payload: SendDataPayload) -> discord.ui.View | None:
    """Link buttons, one action row each as given (they need no handler, so the view never times out)."""
    if not payload.components:
        return None
    view = discord.ui.View(timeout=None)
    for row_index, row in enumerate(payload.components):
        for button in row.components:
            view.add_item(discord.ui.Button(label=button.label, url=button.url, row=row_index))
    return view


def message_kwargs(payload: SendDataPayload) -> dict[str, Any]:
    """Arguments for `Messageable.send` that post exactly what the payload describes."""
    kwargs: dict[str, Any] = {
        "content": payload.content,
        "embeds": [to_embed(spec) for spec in payload.embeds],
        # Posted text never pings anyone: an API key must not be a way to mass-mention a server.
        "allowed_mentions": discord.AllowedMentions.none(),
    }
    view = to_view(payload)
    if view is not None:
        kwargs["view"] = view
    return kwargs


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if limit > 0 else ""


def result_embed(
    *,
    title: str | None = None,
    description: str | None = None,
    url: str | None = None,
    colour: int | discord.Colour | None = None,
    fields: Iterable[tuple[str, str, bool]] = (),
    image_url: str | None = None,
    thumbnail_url: str | None = None,
    author: str | None = None,
    footer: str | None = None,
) -> discord.Embed:
    """A result embed built through the send-data schema: text is clipped to Discord's limits (results
    come from models, which don't count characters), then validated, then converted."""
    title = _clip(title, schema.TITLE_MAX)
    author = _clip(author, schema.AUTHOR_MAX)
    footer = _clip(footer, schema.FOOTER_MAX)
    # The 6000-character total: title, author and footer first, then the description, then fields in
    # order while they fit (the last one clipped, the rest dropped).
    budget = schema.EMBED_TOTAL_MAX - sum(len(text or "") for text in (title, author, footer))
    description = _clip(description, min(schema.DESCRIPTION_MAX, budget))
    budget -= len(description or "")
    clipped: list[tuple[str, str, bool]] = []
    for name, value, inline in list(fields)[: schema.FIELDS_MAX]:
        name = _clip(name or "-", min(schema.FIELD_NAME_MAX, budget - 1)) or ""
        value = _clip(value or "-", min(schema.FIELD_VALUE_MAX, budget - len(name))) or ""
        if not name or not value or budget - len(name) < 1:
            break
        clipped.append((name, value, inline))
        budget -= len(name) + len(value)
    data: dict[str, Any] = {
        "title": title,
        "description": description,
        "url": url,
        "color": int(colour) if colour is not None else None,
        "image": {"url": image_url} if image_url else None,
        "thumbnail": {"url": thumbnail_url} if thumbnail_url else None,
        "author": {"name": author} if author else None,
        "footer": {"text": footer} if footer else None,
        "fields": [{"name": name, "value": value, "inline": inline} for name, value, inline in clipped],
    }
    payload = schema.parse_payload({"embeds": [data]}, require_channel=False)
    return to_embed(payload.embeds[0])
