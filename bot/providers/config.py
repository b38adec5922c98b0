"""Provider configuration: the `[[provider]]` tables of providers.toml, with keys from the environment."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from bot.errors import ConfigError

ProfileName = Literal["digicord", "airforce", "anyai", "purlabs", "openai"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("digicord", "airforce", "anyai", "purlabs", "openai")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

MiB = 1024 * 1024


class Secret:
    """A key that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    name: str
    profile: ProfileName
    base_url: str
    api_key: Secret | None = None
    api_key_env: str | None = None
    priority: int = 100
    models: tuple[str, ...] = ()
    default_model: str | None = None
    """The chat model sent when a request names none; without it, the first of `models`."""
    closed_source: tuple[str, ...] = ()
    """Extra glob patterns of closed-source model ids (added to the built-in ones)."""
    path_prefix: str | None = None
    """Overrides the profile's prefix (`/api/v1`, `/v1`, ``); `""` talks to the bare paths."""
    max_message_chars: int | None = None
    connect_timeout: float = 5.0
    timeout: float = 60.0
    first_byte_timeout: float = 30.0
    idle_timeout: float = 30.0
    stream_timeout: float = 300.0
    stream_read_interval: float = 0.08
    """Least time between two reads of a streamed answer. Data that arrives meanwhile waits in the
    socket and is read at once: a model that sends each token in its own packet costs one wakeup per
    interval instead of one per token. 0 reads every packet as it comes."""
    retries: int = 1
    max_concurrency: int = 64
    max_image_bytes: int = 20 * MiB
    max_audio_bytes: int = 25 * MiB
    max_json_bytes: int = 4 * MiB


_FLOAT_FIELDS = ("connect_timeout", "timeout", "first_byte_timeout", "idle_timeout", "stream_timeout")
_INT_FIELDS = {
    "priority": (-1_000_000, 1_000_000),
    "retries": (0, 5),
    "max_concurrency": (1, 256),
    "max_message_chars": (1, 1_000_000),
    "max_image_bytes": (1024, 512 * MiB),
    "max_audio_bytes": (1024, 512 * MiB),
    "max_json_bytes": (1024, 512 * MiB),
}
_KNOWN = {
    "name",
    "profile",
    "base_url",
    "api_key_env",
    "models",
    "default_model",
    "closed_source",
    "path_prefix",
    "stream_read_interval",
    *_FLOAT_FIELDS,
    *_INT_FIELDS,
}


def load_providers(path: Path, environ: Mapping[str, str]) -> list[ProviderConfig]:
    """Read providers.toml; keys come from `environ` through each provider's `api_key_env`."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"The providers file {path} does not exist; set PROVIDERS_FILE to its path."
        ) from None
    except OSError as exc:
        raise ConfigError(f"The providers file {path} could not be read ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The providers file {path} is not valid TOML: {exc}.") from None
    return parse_providers(raw, environ, source=str(path))


def parse_providers(
    raw: Mapping[str, Any], environ: Mapping[str, str], *, source: str = "providers file"
) -> list[ProviderConfig]:
    tables = raw.get("provider", [])
    unknown_top = set(raw) - {"provider"}
    if unknown_top:
        raise ConfigError(
            f"The {source} has unknown top-level key(s) {sorted(unknown_top)}; "
            "list gateways as [[provider]] tables."
        )
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"In the {source}, `provider` must be a list of [[provider]] tables.")
    configs: list[ProviderConfig] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        config = _parse_one(table, environ, index)
        if config.name in seen:
            raise ConfigError(
                f"Provider {config.name!r}: the name is used twice; each `name` must be unique."
            )
        seen.add(config.name)
        configs.append(config)
    for config in configs:
        if config.profile == "openai" and config.default_model is None and not config.models:
            raise ConfigError(
                f"Provider {config.name!r}: `default_model` is required for an openai provider without "
                "`models` (OpenAI-compatible servers refuse a chat without a model), "
                'e.g. default_model = "gpt-4o-mini".'
            )
    return configs


def _parse_one(table: Mapping[str, Any], environ: Mapping[str, str], index: int) -> ProviderConfig:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"Provider #{index + 1}: `name` must be 1-40 letters, digits, '.', '_' or '-' (got {name!r})."
        )

    def fail(field_name: str, problem: str) -> ConfigError:
        return ConfigError(f"Provider {name!r}: `{field_name}` {problem}.")

    unknown = set(table) - _KNOWN
    if "api_key" in unknown or "key" in unknown:
        raise fail(
            "api_key", "must not be in the file; put the key in an environment variable named by api_key_env"
        )
    if unknown:
        raise fail(sorted(unknown)[0], f"is not a known field (known: {', '.join(sorted(_KNOWN))})")

    profile = table.get("profile")
    if profile not in PROFILE_NAMES:
        raise fail("profile", f"must be one of {', '.join(PROFILE_NAMES)} (got {profile!r})")

    base_url = table.get("base_url")
    if not isinstance(base_url, str):
        raise fail("base_url", 'is required, e.g. base_url = "https://api.example.com"')
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("base_url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise fail("base_url", "must not contain credentials, a query or a fragment; keys go in api_key_env")

    api_key: Secret | None = None
    api_key_env = table.get("api_key_env")
    if api_key_env is not None:
        if not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env):
            raise fail("api_key_env", 'must be the name of an environment variable, e.g. "DIGICORD_KEY"')
        value = environ.get(api_key_env, "").strip()
        if not value:
            raise fail("api_key_env", f"names {api_key_env}, which is not set (or empty) in the environment")
        api_key = Secret(value)

    kwargs: dict[str, Any] = {}
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise fail("models", "must be a list of model names")
    kwargs["models"] = tuple(m.strip() for m in models)

    default_model = table.get("default_model")
    if default_model is not None:
        if not isinstance(default_model, str) or not default_model.strip() or len(default_model) > 200:
            raise fail("default_model", 'must be a model name, e.g. default_model = "gpt-4o-mini"')
        kwargs["default_model"] = default_model.strip()
    closed = table.get("closed_source", [])
    if not isinstance(closed, list) or not all(isinstance(c, str) and c.strip() for c in closed):
        raise fail("closed_source", 'must be a list of glob patterns, e.g. ["azure-*", "*claude*"]')
    kwargs["closed_source"] = tuple(c.strip() for c in closed)

    prefix = table.get("path_prefix")
    if prefix is not None:
        if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")) or "?" in prefix:
            raise fail("path_prefix", "must be empty or a path starting with '/', e.g. \"/v1\"")
        kwargs["path_prefix"] = prefix.rstrip("/")

    for key in _FLOAT_FIELDS:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise fail(key, f"must be a number of seconds between 0 and 3600 (got {value!r})")
            kwargs[key] = float(value)
    if "stream_read_interval" in table:
        value = table["stream_read_interval"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise fail("stream_read_interval", f"must be a number of seconds from 0 to 1 (got {value!r})")
        kwargs["stream_read_interval"] = float(value)
    for key, (low, high) in _INT_FIELDS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise fail(key, f"must be a whole number from {low} to {high} (got {value!r})")
            kwargs[key] = value
    kwargs.setdefault("priority", (index + 1) * 10)
    return ProviderConfig(
        name=name,
        profile=cast(ProfileName, profile),
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        api_key_env=api_key_env,
        **kwargs,
    )
