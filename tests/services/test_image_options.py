"""Per-model option checks for /imagine and /flux, decided before anything is sent."""

from __future__ import annotations

import random

import pytest

from bot.errors import InvalidInput
from bot.services.image_options import (
    Backend,
    ImageSettings,
    Offer,
    flux_settings,
    imagine_settings,
    nearest_multiples,
)

EVERYTHING = Offer(airforce_imagine=True, anyai_imagine=True, generations=True, flux=True)


def imagine(model: str | None, offer: Offer = EVERYTHING, **given: object) -> ImageSettings:
    return imagine_settings(offer, prompt="a cat", model=model, given=dict(given), rng=random.Random(1))


@pytest.mark.parametrize(
    ("model", "backend"),
    [
        ("flux-realism", Backend.AIRFORCE),
        ("sdxl", Backend.ANYAI),
        ("pluto", Backend.PLUTO),
        ("dall-e-3", Backend.GENERATIONS),
    ],
)
def test_each_model_goes_to_the_endpoint_that_draws_it(model: str, backend: Backend) -> None:
    assert imagine(model).backend is backend


def test_dalle_uses_anyai_imagine_when_no_generations_endpoint_is_configured() -> None:
    assert imagine("dall-e-3", Offer(anyai_imagine=True)).backend is Backend.ANYAI


@pytest.mark.parametrize(
    ("model", "option", "value"),
    [
        ("pluto", "width", 512),
        ("pluto", "seed", 3),
        ("pluto", "steps", 10),
        ("flux", "negative_prompt", "dogs"),
        ("flux", "width", 512),
        ("sdxl", "size", "16:9"),
        ("dall-e-3", "seed", 1),
        ("dall-e-3", "steps", 5),
    ],
)
def test_an_option_the_model_does_not_take_is_refused_by_name(model: str, option: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=f"`{option}`") as refused:
        imagine(model, **{option: value})
    assert refused.value.user_message.count(".") == 1  # one sentence


def test_sizes_are_checked_against_the_models_list() -> None:
    assert imagine("flux", size="21:9").size == "21:9"
    with pytest.raises(InvalidInput, match="1:1"):
        imagine("flux", size="3:2")
    with pytest.raises(InvalidInput, match="1792x1024"):
        imagine("dall-e-3", size="512x512")


def test_unknown_models_and_missing_backends_are_refused() -> None:
    with pytest.raises(InvalidInput, match="can't be drawn"):
        imagine("no-such-model")
    with pytest.raises(InvalidInput, match="can't be drawn"):
        imagine("sdxl", Offer(airforce_imagine=True))
    # A model only the gateway's own /imagine/models lists is drawn by airforce.
    listed = Offer(airforce_imagine=True, airforce_listed=frozenset({"flux-new"}))
    assert imagine("flux-new", listed).backend is Backend.AIRFORCE


def test_a_seed_is_chosen_and_recorded_when_the_model_takes_one() -> None:
    assert imagine("flux").seed is not None
    assert imagine("pluto").seed is None
    assert imagine("sdxl", seed=42).seed == 42


def test_flux_sides_with_the_nearest_valid_values() -> None:
    with pytest.raises(InvalidInput) as refused:
        flux_settings(EVERYTHING, prompt="x", model=None, given={"width": 1000, "height": 1000})
    text = refused.value.user_message
    assert "width a multiple of 16 (nearest: 992 or 1008)" in text
    assert "height a multiple of 32 (nearest: 992 or 1024)" in text
    ok = flux_settings(EVERYTHING, prompt="x", model=None, given={"width": 1008, "height": 992, "count": 4})
    assert (ok.width, ok.height, ok.count) == (1008, 992, 4)
    with pytest.raises(InvalidInput, match="1 to 4 steps"):
        flux_settings(EVERYTHING, prompt="x", model=None, given={"steps": 5})
    with pytest.raises(InvalidInput, match="`size`"):
        flux_settings(EVERYTHING, prompt="x", model=None, given={"size": "1:1"})
    with pytest.raises(InvalidInput, match="FLUX"):
        flux_settings(Offer(), prompt="x", model=None, given={})


def test_nearest_multiples_stay_in_range() -> None:
    assert nearest_multiples(70, 16) == (64, 80)
    assert nearest_multiples(2047, 32) == (2016, 2048)
    assert nearest_multiples(2040, 16) == (2032, 2048)
    assert nearest_multiples(65, 32) == (64, 96)


def test_settings_survive_storage_and_reseed() -> None:
    settings = imagine("sdxl", width=512, negative_prompt="dogs", count=3)
    assert ImageSettings.from_json(settings.to_json()) == settings
    again = settings.reseeded(random.Random(7), prompt="a dog")
    assert again.prompt == "a dog" and again.seed != settings.seed and again.width == 512
    assert imagine("pluto").reseeded().seed is None


def test_quality_only_for_dalle3_through_generations() -> None:
    assert imagine("dall-e-3", quality="hd").quality == "hd"
    for model, offer in (
        ("sdxl", EVERYTHING),
        ("dall-e-2", EVERYTHING),
        ("flux", EVERYTHING),
        ("dall-e-3", Offer(anyai_imagine=True)),  # dall-e-3 drawn by GET /imagine takes no quality
    ):
        with pytest.raises(InvalidInput, match="`quality`"):
            imagine(model, offer, quality="hd")
    with pytest.raises(InvalidInput, match="standard or hd"):
        imagine("dall-e-3", quality="ultra")


def test_fast_only_for_airforce_models_where_imagine2_is_offered() -> None:
    fast_offer = Offer(airforce_imagine=True, anyai_imagine=True, airforce_fast=True)
    settings = imagine("flux-realism", fast_offer, fast=True)
    assert settings.fast and ImageSettings.from_json(settings.to_json()) == settings
    assert not imagine("flux-realism", fast_offer, fast=False).fast
    with pytest.raises(InvalidInput, match="`fast`"):
        imagine("sdxl", fast_offer, fast=True)
    with pytest.raises(InvalidInput, match="`fast`"):
        imagine("flux", EVERYTHING, fast=True)  # no /imagine2 configured
