"""Draw images for a set of settings: one provider call per backend, every result checked to be an image."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

from bot.errors import ConcordError
from bot.providers import (
    FluxRequest,
    ImageGenerationRequest,
    ImageSet,
    ImagineRequest,
    OutcomeUnknown,
    ProviderClient,
    ProviderUnavailable,
)
from bot.services.fetcher import FetchRefused, GuardedFetcher
from bot.services.image_options import Backend, ImageSettings

log = logging.getLogger(__name__)

NOT_AN_IMAGE = "The AI service sent something that is not an image, so nothing was posted."
EMPTY_IMAGE = "The AI service sent an empty image, so nothing was posted."
_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}
_FORMATS["GIF"] = ("gif", "image/gif")


class GenerationFailed(ConcordError):
    """Nothing was drawn; the message is the one line the user reads (a Retry button goes with it)."""


@dataclass(frozen=True)
class ImageFile:
    data: bytes
    filename: str
    content_type: str
    source_url: str | None = None
    """Where the provider published it (a link to fall back on), when it gave a URL."""


@dataclass(frozen=True)
class Drawn:
    images: tuple[ImageFile, ...]
    provider: str
    model: str | None


def checked_image(data: bytes, stem: str, *, source_url: str | None = None) -> ImageFile:
    """Bytes that Pillow can open as an image, named by their real format; anything else is refused."""
    if not data:
        raise GenerationFailed(EMPTY_IMAGE)
    from PIL import Image, UnidentifiedImageError  # Pillow loads with the first image, not at start

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise GenerationFailed(NOT_AN_IMAGE) from None
    ext, ctype = _FORMATS.get(fmt, ("png", "image/png"))
    if fmt not in _FORMATS:
        raise GenerationFailed(NOT_AN_IMAGE)
    return ImageFile(data=data, filename=f"{stem}.{ext}", content_type=ctype, source_url=source_url)


def failure_line(error: BaseException) -> str:
    """One line for a failed generation: what went wrong, never a URL, key or upstream page."""
    if isinstance(error, ConcordError) and not isinstance(error, ProviderUnavailable):
        return error.user_message
    if isinstance(error, OutcomeUnknown):
        return error.user_message
    if isinstance(error, ProviderUnavailable):
        reasons = [a for a in error.attempts if not a.reason.startswith("skipped")]
        last = reasons[-1] if reasons else None
        if last is None:
            return "The AI service is cooling down after recent failures, so nothing was generated."
        if last.status == 429:
            why = "the AI service is rate-limiting requests"
        elif last.status in (401, 403):
            why = "the AI service refused the bot's key"
        elif last.status is not None and (last.status >= 500 or last.status == 408):
            why = f"the AI service had a server error ({last.status})"
        elif last.status is not None:
            why = f"the AI service refused the request ({last.status})"
        elif last.reason.startswith(("answered with", "an image", "the image response")):
            why = "the AI service " + last.reason.replace("an image's", "its image's", 1)
        elif "timed out" in last.reason:
            why = "the AI service took too long to answer"
        else:
            why = "the AI service could not be reached"
        return f"Nothing was generated: {why}."
    return "Nothing was generated: something went wrong on our side."


class ImageGenerator:
    """Turns settings into checked image files; URL answers are downloaded only through the fetcher."""

    def __init__(self, providers: ProviderClient, fetcher: GuardedFetcher, *, max_bytes: int) -> None:
        self.providers = providers
        self.fetcher = fetcher
        self.max_bytes = max_bytes

    async def draw(self, settings: ImageSettings) -> Drawn:
        """All `settings.count` images, or GenerationFailed/ProviderUnavailable when none arrived."""
        if settings.backend is Backend.FLUX:
            request = FluxRequest(
                prompt=settings.prompt,
                model=settings.model,
                steps=settings.steps,
                n=settings.count,
                seed=settings.seed,
                width=settings.width,
                height=settings.height,
                negative_prompt=settings.negative_prompt,
            )
            return await self._from_set(await self.providers.flux(request))
        if settings.backend is Backend.GENERATIONS:
            return await self._generations(settings)
        return await self._imagine(settings)

    async def _imagine(self, settings: ImageSettings) -> Drawn:
        """GET /imagine draws one image a call: `count` calls, seeds counting up from the recorded one."""

        async def one(index: int) -> tuple[ImageFile, str]:
            seed = settings.seed + index if settings.seed is not None else None
            answer = await self.providers.imagine(
                ImagineRequest(
                    prompt=settings.prompt,
                    model=settings.model,
                    size=settings.size,
                    seed=seed,
                    negative_prompt=settings.negative_prompt,
                    width=settings.width,
                    height=settings.height,
                    steps=settings.steps,
                    fast=settings.fast,
                )
            )
            return checked_image(answer.data, f"image_{index + 1}"), answer.provider

        results = await asyncio.gather(*(one(i) for i in range(settings.count)), return_exceptions=True)
        return _gathered(results, settings.model)

    async def _generations(self, settings: ImageSettings) -> Drawn:
        # dall-e-3 draws one image per request; dall-e-2 takes n.
        per_call = 1 if settings.model == "dall-e-3" else settings.count
        calls = -(-settings.count // per_call)

        async def one(_: int) -> ImageSet:
            return await self.providers.generate_images(
                ImageGenerationRequest(
                    prompt=settings.prompt,
                    model=settings.model or "dall-e-3",
                    n=per_call,
                    size=settings.size,
                    quality=settings.quality,
                    response_format="b64_json",
                )
            )

        sets = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        good = [s for s in sets if isinstance(s, ImageSet)]
        if not good:
            error = next(s for s in sets if isinstance(s, BaseException))
            raise error
        merged = ImageSet(
            images=tuple(i for s in good for i in s.images)[: settings.count],
            provider=good[0].provider,
            model=settings.model,
        )
        return await self._from_set(merged)

    async def _from_set(self, answer: ImageSet) -> Drawn:
        async def one(index: int) -> tuple[ImageFile, str]:
            image = answer.images[index]
            stem = f"image_{index + 1}"
            if image.data is not None:
                return checked_image(image.data, stem), answer.provider
            assert image.url is not None
            fetched = await self.fetcher.fetch(image.url, max_bytes=self.max_bytes, expect="image")
            return checked_image(fetched.data, stem, source_url=image.url), answer.provider

        results = await asyncio.gather(*(one(i) for i in range(len(answer.images))), return_exceptions=True)
        return _gathered(results, answer.model)


def _gathered(results: list[tuple[ImageFile, str] | BaseException], model: str | None) -> Drawn:
    """Keep every image that arrived; when none did, raise the first failure (a sentence for the user)."""
    good = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # cancellation and the like are not failures to report
        if not isinstance(failure, ConcordError | FetchRefused):
            log.error("image generation failed unexpectedly", exc_info=failure)
    if not good:
        first = failures[0]
        if isinstance(first, ConcordError):
            raise first
        raise GenerationFailed("Nothing was generated: something went wrong on our side.") from first
    return Drawn(images=tuple(file for file, _ in good), provider=good[0][1], model=model)
