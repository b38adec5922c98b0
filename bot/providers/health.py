"""Judging one provider's probe for `python -m bot doctor`: a problem and a fix, in a sentence each."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from bot.providers import parsing
from bot.providers.config import ProviderConfig
from bot.providers.profiles import Profile
from bot.providers.redact import safe_url
from bot.providers.types import Capability, ProviderHealth


def assess(
    config: ProviderConfig,
    profile: Profile,
    *,
    probe: Capability,
    status: int | None,
    body: bytes,
    content_type: str,
    error: BaseException | None,
    latency_ms: float,
    redact: Callable[[str], str],
    default_model: str | None = None,
) -> ProviderHealth:
    def result(
        reachable: bool, problem: str | None = None, fix: str | None = None, models: tuple[str, ...] = ()
    ):
        return ProviderHealth(
            name=config.name,
            profile=config.profile,
            base_url=safe_url(config.base_url),
            reachable=reachable,
            latency_ms=latency_ms if reachable else None,
            capabilities=tuple(sorted(c.value for c in profile.capabilities)),
            problem=redact(problem) if problem else None,
            fix=redact(fix) if fix else None,
            models=models,
            default_model=default_model or (models[0] if models else None),
        )

    key_hint = (
        f"Check the key in the environment variable {config.api_key_env}."
        if config.api_key_env
        else "Set api_key_env in the providers file to the variable that holds the key."
    )
    prefix = config.path_prefix if config.path_prefix is not None else profile.prefix
    if error is not None:
        if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
            return result(
                False,
                "It did not answer in time.",
                "Check that the service is up and that base_url is right; other providers are used meanwhile",
            )
        return result(
            False,
            f"It could not be reached ({type(error).__name__}).",
            "Check base_url, DNS and the network; other providers are used meanwhile.",
        )
    assert status is not None
    if status in (401, 403):
        return result(True, f"It refused the API key ({status}).", key_hint)
    if probe is Capability.CHAT:
        # purlabs has no model list: any HTTP answer from the chat path proves it is there.
        if status >= 500:
            return result(True, f"It answered with a server error ({status}).", "Wait, or ask its operators.")
        return result(True)
    if status == 404:
        return result(
            True,
            "Its model list was not found (404).",
            f"Check base_url and path_prefix (the {profile.name} default prefix is {prefix or 'empty'!r}).",
        )
    if status == 429:
        return result(True, "It is rate limiting this key (429).", "Wait, or use a key with a higher plan.")
    if status >= 400:
        return result(True, f"It answered with an error ({status}).", "Wait, or ask its operators.")
    try:
        models = parsing.parse_models(parsing.decode_json(body, content_type), "chat", config.name)
    except parsing.ShapeError as exc:
        return result(
            True,
            f"Its model list is not in the documented shape: it {exc}.",
            "Check that base_url points at the API, not a website, and that the profile is right.",
        )
    return result(True, models=tuple(m.id for m in models))
