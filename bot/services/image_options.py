"""What each image model accepts: /imagine and /flux options checked per model before anything is sent."""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from bot.errors import InvalidInput
from bot.providers import Capability, ProviderClient

Command = Literal["imagine", "flux"]

# The documented model lists (seed 001 for airforce, seed 004 for anyai); a gateway's own
# `/imagine/models` list adds airforce models beyond these.
AIRFORCE_MODELS = (
    "flux",
    "flux-realism",
    "flux-4o",
    "flux-pixel",
    "flux-3d",
    "flux-anime",
    "flux-disney",
    "any-dark",
    "stable-diffusion-xl-lightning",
    "stable-diffusion-xl-base",
)
ANYAI_MODELS = ("sdxl", "pluto", "dall-e-2", "dall-e-3")
DALLE_MODELS = ("dall-e-2", "dall-e-3")
AIRFORCE_SIZES = ("1:1", "16:9", "9:16", "21:9", "9:21", "1:2", "2:1")
DALLE_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
SIDE_MIN, SIDE_MAX = 64, 2048
SEED_MAX = 2**32 - 1
PROMPT_MAX = 4000
COUNT_MAX = 4
FLUX_WIDTH_MULTIPLE = 16
FLUX_HEIGHT_MULTIPLE = 32

OPTIONS = ("size", "width", "height", "seed", "steps", "negative_prompt", "count", "quality", "fast")
Quality = Literal["standard", "hd"]
QUALITIES: tuple[Quality, ...] = ("standard", "hd")
QUALITY_MODELS = ("dall-e-3",)
"""Models that take `quality`, and only through POST /images/generations (seed 004)."""


class Backend(StrEnum):
    """Which endpoint draws a model, and so which options it takes."""

    AIRFORCE = "airforce"  # GET /imagine (or /imagine2 when fast): prompt, size ratio, seed
    ANYAI = "anyai"  # GET /imagine: prompt, negative_prompt, width, height, steps, seed
    PLUTO = "pluto"  # GET /imagine with pluto: prompt and negative_prompt only
    GENERATIONS = "generations"  # POST /images/generations: prompt, size (WxH), n, quality (dall-e-3)
    FLUX = "flux"  # POST /images/flux/generations


ACCEPTED: dict[Backend, frozenset[str]] = {
    Backend.AIRFORCE: frozenset({"size", "seed", "count", "fast"}),
    Backend.ANYAI: frozenset({"negative_prompt", "width", "height", "steps", "seed", "count"}),
    Backend.PLUTO: frozenset({"negative_prompt", "count"}),
    Backend.GENERATIONS: frozenset({"size", "count"}),
    Backend.FLUX: frozenset({"width", "height", "steps", "seed", "negative_prompt", "count"}),
}


@dataclass(frozen=True)
class Offer:
    """What the configured gateways can draw with (from the providers' profiles)."""

    airforce_imagine: bool = False
    anyai_imagine: bool = False
    generations: bool = False
    flux: bool = False
    airforce_fast: bool = False
    """An airforce gateway offers `/imagine2`, the fast copy of `/imagine`."""
    airforce_listed: frozenset[str] = field(default_factory=frozenset)
    """Models an airforce gateway's `/imagine/models` list names beyond the documented ones."""


@dataclass(frozen=True)
class ImageSettings:
    """One generation's settings: what the embed records and what the buttons repeat."""

    command: Command
    prompt: str
    model: str | None
    backend: Backend
    size: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    steps: int | None = None
    negative_prompt: str | None = None
    count: int = 1
    quality: Quality | None = None
    """dall-e-3 through POST /images/generations: standard or hd."""
    fast: bool = False
    """airforce's `/imagine2` rather than `/imagine`."""

    @property
    def takes_seed(self) -> bool:
        return "seed" in ACCEPTED[self.backend]

    @property
    def size_label(self) -> str:
        if self.size:
            return self.size
        if self.width or self.height:
            return f"{self.width or 'auto'}×{self.height or 'auto'}"
        return "default"

    def reseeded(self, rng: random.Random | None = None, **changes: Any) -> ImageSettings:
        """The same settings with a fresh seed (where the model takes one) and any `changes`."""
        seed = new_seed(rng) if self.takes_seed else None
        return replace(self, seed=seed, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ImageSettings:
        data = json.loads(text)
        data["backend"] = Backend(data["backend"])
        return cls(**data)


def offer_of(providers: ProviderClient, airforce_listed: Iterable[str] = ()) -> Offer:
    """What the configured providers can draw with; `airforce_listed` is the `/imagine/models` list."""

    def has(profile: str, capability: Capability) -> bool:
        return any(
            p.profile == profile and capability in providers.capabilities(p.name) for p in providers.providers
        )

    return Offer(
        airforce_imagine=has("airforce", Capability.IMAGINE),
        airforce_fast=has("airforce", Capability.IMAGINE2),
        anyai_imagine=has("anyai", Capability.IMAGINE),
        generations=providers.available(Capability.IMAGE_GENERATIONS),
        flux=providers.available(Capability.FLUX),
        airforce_listed=frozenset(airforce_listed),
    )


def new_seed(rng: random.Random | None = None) -> int:
    return (rng or random).randint(0, SEED_MAX)


def nearest_multiples(value: int, multiple: int) -> tuple[int, ...]:
    """The valid sides closest to `value` (one or two), kept within the allowed range."""
    below = max(SIDE_MIN + (-SIDE_MIN % multiple), value // multiple * multiple)
    above = min(SIDE_MAX // multiple * multiple, below + multiple)
    return tuple(dict.fromkeys(v for v in (below, above) if SIDE_MIN <= v <= SIDE_MAX))


def _or(values: Iterable[object]) -> str:
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _check_text(name: str, value: str | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidInput(f"The {name} can't be empty.")
        return
    if required and not value.strip():
        raise InvalidInput(f"The {name} can't be empty.")
    if len(value) > PROMPT_MAX:
        raise InvalidInput(f"The {name} is {len(value):,} characters; the most is {PROMPT_MAX:,}.")


def _check_side(name: str, value: int | None) -> None:
    if value is not None and not SIDE_MIN <= value <= SIDE_MAX:
        raise InvalidInput(f"The {name} must be between {SIDE_MIN} and {SIDE_MAX} pixels (got {value}).")


def backend_for_imagine(model: str, offer: Offer) -> Backend:
    """The endpoint that draws `model` for /imagine, or a sentence saying none does here."""
    if model in DALLE_MODELS and offer.generations:
        return Backend.GENERATIONS
    if model == "pluto" and offer.anyai_imagine:
        return Backend.PLUTO
    if model in ANYAI_MODELS and offer.anyai_imagine:
        return Backend.ANYAI
    if (model in AIRFORCE_MODELS or model in offer.airforce_listed) and offer.airforce_imagine:
        return Backend.AIRFORCE
    raise InvalidInput(f"The model `{model[:80]}` can't be drawn by any configured image service.")


def default_imagine_model(offer: Offer) -> str:
    if offer.airforce_imagine:
        return "flux"
    if offer.anyai_imagine:
        return "sdxl"
    if offer.generations:
        return "dall-e-3"
    raise InvalidInput("No configured AI service offers /imagine.")


def imagine_settings(
    offer: Offer,
    *,
    prompt: str,
    model: str | None,
    default_model: str | None = None,
    given: dict[str, Any],
    rng: random.Random | None = None,
) -> ImageSettings:
    """Validated /imagine settings; an option the chosen model does not take is refused by name."""
    _check_text("prompt", prompt, required=True)
    chosen = model or default_model or default_imagine_model(offer)
    backend = backend_for_imagine(chosen, offer)
    extra = {"quality"} if backend is Backend.GENERATIONS and chosen in QUALITY_MODELS else set()
    _refuse_unaccepted(backend, chosen, given, extra=extra)
    quality: Quality | None = given.get("quality")
    if quality is not None and quality not in QUALITIES:
        raise InvalidInput(f"The quality must be {_or(QUALITIES)} (got {str(quality)[:20]!r}).")
    fast = bool(given.get("fast"))
    if fast and not offer.airforce_fast:
        raise InvalidInput("No configured image service offers the `fast` option.")
    _check_text("negative prompt", given.get("negative_prompt"))
    _check_side("width", given.get("width"))
    _check_side("height", given.get("height"))
    steps = given.get("steps")
    if steps is not None and not 1 <= steps <= 100:
        raise InvalidInput(f"The steps must be between 1 and 100 (got {steps}).")
    count = given.get("count") or 1
    if not 1 <= count <= COUNT_MAX:
        raise InvalidInput(f"The count must be between 1 and {COUNT_MAX} (got {count}).")
    size = given.get("size")
    if size is not None:
        allowed: Collection[str] = (
            DALLE_SIZES.get(chosen, ()) if backend is Backend.GENERATIONS else AIRFORCE_SIZES
        )
        if size not in allowed:
            raise InvalidInput(f"The size for {chosen} must be {_or(allowed)} (got {size[:20]!r}).")
    seed = given.get("seed")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise InvalidInput(f"The seed must be between 0 and {SEED_MAX} (got {seed}).")
    settings = ImageSettings(
        command="imagine",
        prompt=prompt,
        model=chosen,
        backend=backend,
        size=size,
        width=given.get("width"),
        height=given.get("height"),
        seed=seed,
        steps=steps,
        negative_prompt=given.get("negative_prompt"),
        count=count,
        quality=quality,
        fast=fast,
    )
    if seed is None and settings.takes_seed:
        settings = replace(settings, seed=new_seed(rng))
    return settings


def flux_settings(
    offer: Offer,
    *,
    prompt: str,
    model: str | None,
    given: dict[str, Any],
    rng: random.Random | None = None,
) -> ImageSettings:
    """Validated /flux settings: width a multiple of 16, height of 32, with the nearest valid values."""
    if not offer.flux:
        raise InvalidInput("No configured AI service offers FLUX.")
    _check_text("prompt", prompt, required=True)
    _refuse_unaccepted(Backend.FLUX, model or "FLUX", given)
    _check_text("negative prompt", given.get("negative_prompt"))
    width, height = given.get("width"), given.get("height")
    _check_side("width", width)
    _check_side("height", height)
    wrong = []
    for name, value, multiple in (
        ("width", width, FLUX_WIDTH_MULTIPLE),
        ("height", height, FLUX_HEIGHT_MULTIPLE),
    ):
        if value is not None and value % multiple:
            wrong.append(
                f"{name} a multiple of {multiple} (nearest: {_or(nearest_multiples(value, multiple))})"
            )
    if wrong:
        raise InvalidInput(f"FLUX needs the {' and the '.join(wrong)}.")
    steps = given.get("steps")
    if steps is not None and not 1 <= steps <= 4:
        raise InvalidInput(f"FLUX takes 1 to 4 steps (got {steps}).")
    count = given.get("count") or 1
    if not 1 <= count <= COUNT_MAX:
        raise InvalidInput(f"The count must be between 1 and {COUNT_MAX} (got {count}).")
    seed = given.get("seed")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise InvalidInput(f"The seed must be between 0 and {SEED_MAX} (got {seed}).")
    return ImageSettings(
        command="flux",
        prompt=prompt,
        model=model,
        backend=Backend.FLUX,
        width=width,
        height=height,
        seed=seed if seed is not None else new_seed(rng),
        steps=steps,
        negative_prompt=given.get("negative_prompt"),
        count=count,
    )


def _refuse_unaccepted(
    backend: Backend, model: str, given: dict[str, Any], *, extra: Collection[str] = ()
) -> None:
    accepted = ACCEPTED[backend] | frozenset(extra)
    for name in OPTIONS:
        value = given.get(name)
        if value is not None and value is not False and name not in accepted:
            takes = ", ".join(sorted(o.replace("_", " ") for o in accepted))
            raise InvalidInput(
                f"The {model[:80]} model doesn't take the `{name}` option (it takes the prompt and {takes})."
            )
