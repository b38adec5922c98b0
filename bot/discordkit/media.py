"""Images and Discord: attachments described for the vision service, results fitted to the upload limit."""

from __future__ import annotations

import io
from dataclasses import dataclass

import discord

from bot.services.vision import ImageAttachment

# Quality steps, then halving the size: most images fit at the first JPEG step.
_QUALITIES = (90, 80, 70, 55)
_MIN_SIDE = 64


def image_attachment(file: discord.Attachment) -> ImageAttachment:
    """What the vision service needs to know about an attachment (checked before any download)."""
    return ImageAttachment(
        url=file.url, filename=file.filename, content_type=file.content_type, size=file.size
    )


def first_image(files: list[discord.Attachment]) -> discord.Attachment | None:
    """The first attachment Discord calls an image, else the first one (refused later with a reason)."""
    images = [f for f in files if (f.content_type or "").startswith("image/")]
    return images[0] if images else (files[0] if files else None)


@dataclass(frozen=True)
class Fitted:
    data: bytes
    filename: str
    reencoded: bool


def fit_upload(data: bytes, filename: str, limit: int) -> Fitted | None:
    """`data` as is when it fits in `limit` bytes, else a smaller JPEG of it; None when nothing fits."""
    if len(data) <= limit:
        return Fitted(data, filename, reencoded=False)
    stem = filename.rsplit(".", 1)[0]
    from PIL import Image  # Pillow loads with the first image to shrink, not at start

    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= limit:
                return Fitted(out.getvalue(), f"{stem}.jpg", reencoded=True)
        width, height = image.size
        if min(width, height) // 2 < _MIN_SIDE:
            return None
        image = image.resize((width // 2, height // 2), Image.Resampling.LANCZOS)
