"""Describe an image attachment for a question: checked before download, fetched through the guarded
fetcher, then asked of a vision model (chat with an image part, or GET /images/vision)."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass

from bot.errors import InvalidInput
from bot.providers import Capability, ProviderClient, VisionRequest, VisionResult
from bot.services.fetcher import GuardedFetcher

DEFAULT_QUESTION = "Describe this image in detail."
PROMPT_QUESTION = (
    "Write one prompt for an image generator that would recreate this image: subject, style, lighting, "
    "composition. Answer with the prompt only, in one paragraph, without quotes."
)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
NO_IMAGE = "That message has no image attached, so there is nothing to describe."
NO_VISION = "No configured AI service can look at images."


@dataclass(frozen=True)
class ImageAttachment:
    """What Discord says about an attachment before anything is downloaded."""

    url: str
    filename: str
    content_type: str | None
    size: int


@dataclass(frozen=True)
class VisionAsk:
    """One question about one attachment: what a Retry button asks again (stored as JSON by its id)."""

    attachment: ImageAttachment
    question: str | None
    model: str | None
    mode: str = "describe"

    KIND = "vision"

    def to_json(self) -> str:
        data = asdict(self)
        data["kind"] = self.KIND
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VisionAsk:
        """The stored question; ValueError when the text is not one (e.g. an image result's settings)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.pop("kind", None) != cls.KIND:
                raise ValueError("not a stored vision question")
            return cls(
                attachment=ImageAttachment(**data.pop("attachment")),
                question=data["question"],
                model=data["model"],
                mode=data["mode"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("not a stored vision question") from exc


def check_image_attachment(attachment: ImageAttachment, *, max_bytes: int) -> None:
    """Refuse a non-image or an oversized file from Discord's own description, before any download."""
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    name = attachment.filename.lower()
    if ctype not in IMAGE_TYPES and not (not ctype and name.endswith(IMAGE_SUFFIXES)):
        raise InvalidInput(f"`{attachment.filename[:80]}` is not an image (PNG, JPEG, WebP or GIF).")
    if attachment.size > max_bytes:
        raise InvalidInput(
            f"That image is {attachment.size / 1_048_576:.1f} MiB; the most I read is "
            f"{max_bytes / 1_048_576:.1f} MiB."
        )


class VisionService:
    """One door for "what is in this image?", shared by /vision, "Describe image" and chat turns.

    Quota is the caller's: reserve Feature.VISION before calling `describe`.
    """

    def __init__(self, providers: ProviderClient, fetcher: GuardedFetcher, *, max_bytes: int) -> None:
        self.providers = providers
        self.fetcher = fetcher
        self.max_bytes = max_bytes

    @property
    def available(self) -> bool:
        return self.providers.available(Capability.VISION_CHAT) or self.providers.available(
            Capability.VISION_URL
        )

    async def describe(
        self, attachment: ImageAttachment, question: str | None = None, *, model: str | None = None
    ) -> VisionResult:
        """The model's answer about `attachment` (FetchRefused, InvalidInput or ProviderUnavailable else)."""
        check_image_attachment(attachment, max_bytes=self.max_bytes)
        fetched = await self.fetcher.fetch(
            attachment.url, max_bytes=self.max_bytes, expect="image", filename=attachment.filename
        )
        if fetched.kind != "image":
            raise InvalidInput(f"`{attachment.filename[:80]}` is not an image, whatever its name says.")
        if self.providers.available(Capability.VISION_CHAT):
            # Chat gateways get the bytes themselves: a Discord link may expire or be unreachable for them.
            encoded = base64.b64encode(fetched.data).decode()
            image_url = f"data:{fetched.content_type};base64,{encoded}"
        else:
            image_url = attachment.url  # GET /images/vision takes only a link
        request = VisionRequest(image_url=image_url, prompt=question or DEFAULT_QUESTION, model=model)
        return await self.providers.vision(request)
