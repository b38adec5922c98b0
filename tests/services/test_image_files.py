"""Image bytes: checked to be images, failures explained in one line, fitted under the upload limit."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from bot.discordkit.media import fit_upload
from bot.providers import AttemptRecord, OutcomeUnknown, ProviderUnavailable
from bot.services.image_generation import GenerationFailed, checked_image, failure_line
from tests.emulators.gateway import media


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_real_images_are_named_by_their_format() -> None:
    assert checked_image(media.png(), "image_1").filename == "image_1.png"
    jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG")
    checked = checked_image(jpeg, "image_2", source_url="https://example.com/x")
    assert (checked.filename, checked.content_type, checked.source_url) == (
        "image_2.jpg",
        "image/jpeg",
        "https://example.com/x",
    )


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"<html>500</html>", b"GIF89a", b"not an image"]
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(GenerationFailed, match="not an image"):
        checked_image(data, "x")


def test_an_empty_body_is_refused() -> None:
    with pytest.raises(GenerationFailed, match="empty"):
        checked_image(b"", "x")


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (AttemptRecord("a", 429, "rate limited"), "rate-limiting"),
        (AttemptRecord("a", 502, "server error: <html>"), "server error (502)"),
        (AttemptRecord("a", 401, "the API key was refused: bad key sk-123"), "refused the bot's key"),
        (AttemptRecord("a", None, "an image's base64 data was corrupt"), "base64 data was corrupt"),
        (AttemptRecord("a", None, "answered with an empty image"), "answered with an empty image"),
        (AttemptRecord("a", None, "timed out waiting for the answer"), "took too long"),
    ],
)
def test_failures_become_one_safe_line(record: AttemptRecord, line: str) -> None:
    text = failure_line(ProviderUnavailable("imagine", [record]))
    assert line in text and text.startswith("Nothing was generated")
    assert "<html>" not in text and "sk-123" not in text


def test_an_unknown_outcome_says_it_was_not_resent() -> None:
    assert "not resent" in failure_line(OutcomeUnknown("flux", [AttemptRecord("a", None, "timed out")]))


def test_small_images_are_kept_as_they_are() -> None:
    data = media.png()
    fitted = fit_upload(data, "image_1.png", 1024)
    assert fitted is not None and fitted.data == data and not fitted.reencoded


def test_large_images_are_reencoded_under_the_limit() -> None:
    noisy = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    data = encoded(noisy, "PNG")
    limit = 40_000
    fitted = fit_upload(data, "image_1.png", limit)
    assert fitted is not None and fitted.reencoded and fitted.filename == "image_1.jpg"
    assert len(fitted.data) <= limit
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.format == "JPEG"


def test_nothing_fits_a_tiny_limit() -> None:
    noisy = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    assert fit_upload(encoded(noisy, "PNG"), "x.png", 100) is None
