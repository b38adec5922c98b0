"""Images that fit Discord's upload limit: re-encoded smaller with Pillow when they are too large."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

# Quality steps, then halving the size: most images fit at the first JPEG step.
_QUALITIES = (90, 80, 70, 55)
_MIN_SIDE = 64


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
