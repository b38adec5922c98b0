"""The typed Settings object, read once from the environment and `.env`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from bot.coerce import Invalid, blank_to_none, boolean, bounded, number, one_of, text, whole_number
from bot.errors import ConfigError
from bot.providers.config import Secret
from bot.services.fetcher import Allowlist
from bot.services.plans_file import PlansFileError, load_plans_file
from bot.services.quotas import BUILTIN_PLANS, Plan

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
HistoryUnit = Literal["tokens", "chars"]

# Values of these keys may hold credentials, so errors never echo them.
SECRET_KEYS = frozenset({"DISCORD_TOKEN", "DATABASE_URL"})


class SettingsInvalid(ValueError):
    """Settings that break their rules; the message has one sentence per bad key and never a secret."""

    def __init__(self, problems: list[tuple[str, str, Any]]) -> None:
        self.problems = problems  # (KEY, reason, value given)
        super().__init__(
            " ".join(
                f"Invalid setting {key}: {reason}{'' if key in SECRET_KEYS else f' (got {given!r})'}."
                for key, reason, given in problems
            )
        )


def _from_environment(env_file: str | Path | None, names: set[str]) -> dict[str, str]:
    """The settings named in the environment (any case) over those in `env_file` (if it exists)."""
    found: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        found.update(
            (key.lower(), value)
            for key, value in dotenv_values(env_file, encoding="utf-8").items()
            if key.lower() in names and value is not None
        )
    found.update((key.lower(), value) for key, value in os.environ.items() if key.lower() in names)
    return found


# --- how each type of setting is read: keyed by the annotation's text in Settings below -------------


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if blank_to_none(value) is None else parse(value)


def _secret(value: Any) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(text(value))


def _path(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise Invalid("must be a file path")
    return Path(value)


def _comma_separated(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise Invalid("must be a comma-separated list")


def _ids(value: Any) -> list[int]:
    ids = []
    for item in _comma_separated([value] if isinstance(value, int) else value):
        try:
            ids.append(whole_number(item))
        except Invalid:
            raise Invalid(f"must be comma-separated user ids, and {item!r} is not a number") from None
    return ids


def _log_level(value: Any) -> str:
    return one_of(value.upper() if isinstance(value, str) else value, get_args(LogLevel))


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "Secret | None": _secret,
    "str": text,
    "str | None": _optional(text),
    "int": whole_number,
    "int | None": _optional(whole_number),
    "float": number,
    "bool": boolean,
    "Path | None": _optional(_path),
    "list[int]": _ids,
    "list[str]": lambda value: [text(item) for item in _comma_separated(value)],
    "LogLevel": _log_level,
    "HistoryUnit": lambda value: one_of(value, get_args(HistoryUnit)),
}


# --- rules beyond the type, given the value and the settings read before it -------------------------


def _known_driver(value: str, earlier: Mapping[str, Any]) -> str:
    if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise Invalid("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    return value


def _valid_allowlist(value: list[str], earlier: Mapping[str, Any]) -> list[str]:
    try:
        Allowlist.parse(value)  # raises ValueError naming the bad entry
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return value


def _plans_file_is_valid(value: Path | None, earlier: Mapping[str, Any]) -> Path | None:
    try:
        load_plans_file(value)
    except PlansFileError as exc:
        raise Invalid(str(exc)) from None
    return value


def _known_plan(value: str, earlier: Mapping[str, Any]) -> str:
    value = value.strip().lower()
    known = [*BUILTIN_PLANS]
    path = earlier.get("quota_plans_file")
    if path is not None:
        known += list(load_plans_file(path))
    if value not in known:
        raise Invalid(f"must be one of {', '.join(known)}")
    return value


def _rules(
    *,
    description: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    check: Callable[[Any, Mapping[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """A setting's metadata: the README's description, numeric bounds and a rule beyond its type."""
    return {"description": description, "bounds": {"ge": ge, "gt": gt, "le": le}, "check": check}


@dataclass(frozen=True, init=False)
class Settings:
    """Every bot-wide setting. Field names map to upper-case environment keys.

    Values given to the constructor win over the environment, which wins over the `.env` file, which wins
    over the defaults; each value, given or default, is read and checked by its annotation's parser, its
    bounds and its rule. Unknown names are ignored."""

    model_fields: ClassVar[dict[str, Field[Any]]]

    discord_token: Secret | None = field(
        default=None,
        metadata=_rules(description="Bot token from the Discord developer portal (Bot → Reset Token)."),
    )
    database_url: str = field(
        default="sqlite+aiosqlite:///data/concord.db",
        repr=False,  # may hold the database password
        metadata=_rules(
            check=_known_driver,
            description="SQLAlchemy async URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://user:pw@host/db.",
        ),
    )
    shard_count: int | None = field(
        default=None,
        metadata=_rules(ge=1, description="Number of gateway shards; empty lets Discord decide."),
    )
    dev_guild_id: int | None = field(
        default=None,
        metadata=_rules(
            description="Guild id to sync slash commands to at start (instant, for development)."
        ),
    )
    owner_ids: list[int] = field(
        default_factory=list,
        metadata=_rules(description="Comma-separated user ids with owner rights, besides the app owner."),
    )
    message_content_intent: bool = field(
        default=False,
        metadata=_rules(
            description="Request the privileged Message Content intent (enable it in the portal first)."
        ),
    )
    log_level: LogLevel = field(default="INFO", metadata=_rules(description="DEBUG, INFO, WARNING or ERROR."))
    guild_ready_timeout: float = field(
        default=2.0,
        metadata=_rules(gt=0, le=60, description="Seconds to wait for guilds to stream in before on_ready."),
    )
    providers_file: Path | None = field(
        default=None,
        metadata=_rules(description="Path to providers.toml listing the AI gateways (see README)."),
    )
    discord_api_base: str = field(
        default="https://discord.com/api/v10",
        metadata=_rules(
            description="Discord REST base URL; change only for a REST proxy or the test emulator."
        ),
    )
    discord_gateway_url: str | None = field(
        default=None,
        metadata=_rules(description="Discord gateway URL override; empty uses the one Discord advertises."),
    )
    # --- chat (cogs/chat) ---
    chat_default_model: str | None = field(
        default=None,
        metadata=_rules(
            description="Chat model when neither the user nor the guild picks one; empty: the provider's."
        ),
    )
    chat_system_prompt: str | None = field(
        default=None,
        metadata=_rules(description="Default persona for channels without their own system prompt."),
    )
    chat_edit_interval: float = field(
        default=1.0,
        metadata=_rules(
            ge=0.2, le=30, description="Seconds between edits of a reply while the model writes."
        ),
    )
    chat_history_budget: int = field(
        default=3000,
        metadata=_rules(
            ge=0, le=1_000_000, description="How much history a model sees (see CHAT_HISTORY_UNIT)."
        ),
    )
    chat_history_unit: HistoryUnit = field(
        default="tokens",
        metadata=_rules(description="Unit of CHAT_HISTORY_BUDGET: estimated tokens or characters."),
    )
    chat_max_concurrency: int = field(
        default=32,
        metadata=_rules(
            ge=1,
            le=1000,
            description="Chat replies generated at once across all channels (provider calls are cheap I/O).",
        ),
    )
    chat_busy_wait: float = field(
        default=5.0,
        metadata=_rules(
            ge=0, le=300, description="Seconds a turn waits for a free slot before 'busy' is shown."
        ),
    )
    chat_queue_limit: int = field(
        default=10,
        metadata=_rules(
            ge=1, le=1000, description="Questions one channel may have waiting or running at once."
        ),
    )
    chat_max_tokens_free: int = field(
        default=1024,
        metadata=_rules(
            ge=1, le=1_000_000, description="Longest reply (max_tokens) asked of a model on the free plan."
        ),
    )
    chat_max_tokens_premium: int = field(
        default=4096,
        metadata=_rules(ge=1, le=1_000_000, description="Longest reply (max_tokens) on a premium plan."),
    )
    chat_max_pages: int = field(
        default=5,
        metadata=_rules(ge=1, le=50, description="Messages one reply may fill before it is cut with a note."),
    )
    shutdown_grace: float = field(
        default=10.0,
        metadata=_rules(
            ge=0, le=600, description="Seconds replies in flight get to finish on SIGTERM/SIGINT."
        ),
    )
    chat_attachment_max_bytes: int = field(
        default=32 * 1024,
        metadata=_rules(ge=0, le=8 * 1024 * 1024, description="Largest text file /chat accepts, in bytes."),
    )
    # --- governance: the send-data HTTP endpoint (bot/http_api.py) ---
    http_port: int | None = field(
        default=None,
        metadata=_rules(
            ge=0, le=65535, description="Port of the send-data/healthz HTTP endpoint; empty: off."
        ),
    )
    http_host: str = field(
        default="127.0.0.1", metadata=_rules(description="Address the HTTP endpoint listens on.")
    )
    send_data_rate_limit: int = field(
        default=30,
        metadata=_rules(
            ge=1, le=10_000, description="POST /send-data requests each API key may make per minute."
        ),
    )
    # --- songs (cogs/songs, bot/services/song_jobs.py) ---
    song_deadline: float = field(
        default=900,
        metadata=_rules(ge=10, le=86_400, description="Seconds a song may take before its job gives up."),
    )
    song_max_active: int = field(
        default=2,
        metadata=_rules(ge=1, le=100, description="Song requests one user may have generating at once."),
    )
    song_poll_first: float = field(
        default=5,
        metadata=_rules(ge=0.05, le=600, description="Seconds before a new song's first status check."),
    )
    song_poll_max: float = field(
        default=30,
        metadata=_rules(ge=0.1, le=3600, description="Longest pause between status checks of one song."),
    )
    song_lease: float = field(
        default=60,
        metadata=_rules(
            ge=1,
            le=3600,
            description="Seconds a bot process holds a song job it polls; another takes it over after this.",
        ),
    )
    # --- web answers (cogs/ask.py) ---
    ask_edit_interval: float = field(
        default=1.0,
        metadata=_rules(ge=0.2, le=30, description="Seconds between edits of an /ask answer as it arrives."),
    )
    image_max_bytes: int = field(
        default=20 * 1024 * 1024,
        metadata=_rules(
            ge=1024,
            le=100 * 1024 * 1024,
            description="Largest image the bot downloads: an attachment for /vision, a provider's image URL.",
        ),
    )
    # --- downloads (bot/services/fetcher.py) ---
    fetch_allowlist: list[str] = field(
        default_factory=list,
        metadata=_rules(
            check=_valid_allowlist,
            description="For tests/emulators only: comma-separated host[:port], IPs or CIDRs the downloader "
            "may reach although they are not public addresses. Empty in production.",
        ),
    )

    # --- voice: /tts (cogs/tts) ---
    tts_max_chars: int = field(
        default=300,
        metadata=_rules(ge=1, le=1000, description="Longest text /tts say speaks, in characters."),
    )
    tts_idle_timeout: float = field(
        default=300.0,
        metadata=_rules(ge=1, le=86400, description="Seconds the bot stays in voice with nothing to say."),
    )
    tts_connect_timeout: float = field(
        default=15.0,
        metadata=_rules(gt=0, le=120, description="Seconds to wait for a voice connection before retrying."),
    )
    tts_queue_limit: int = field(
        default=20,
        metadata=_rules(ge=1, le=500, description="Speech requests waiting in one server's queue at most."),
    )
    audit_retention_days: int = field(
        default=30,
        metadata=_rules(
            ge=1, le=3650, description="Days send-data audit rows are kept before they are pruned."
        ),
    )
    # --- the operator's quota plans (bot/services/quotas.py, bot/services/plans_file.py) ---
    quota_plans_file: Path | None = field(
        default=None,
        metadata=_rules(
            check=_plans_file_is_valid,
            description="Optional TOML file of custom global plans (see README, Quotas).",
        ),
    )
    quota_default_plan: str = field(
        default="free",
        metadata=_rules(
            check=_known_plan,
            description="Global plan of users without a grant: free, premium, unlimited or a plans-file "
            "plan.",
        ),
    )
    config_cache_seconds: float = field(
        default=10.0,
        metadata=_rules(
            ge=0,
            le=300,
            description="Seconds a guild's settings and a user's grants are kept in memory "
            "(0: read every time).",
        ),
    )

    def __init__(self, _env_file: str | Path | None = ".env", **values: Any) -> None:
        given = {**_from_environment(_env_file, set(self.model_fields)), **values}
        read: dict[str, Any] = {}
        problems: list[tuple[str, str, Any]] = []
        for spec in self.model_fields.values():
            if spec.name in given:
                value = given[spec.name]
            elif spec.default_factory is not MISSING:
                value = spec.default_factory()
            else:
                value = spec.default
            try:
                read[spec.name] = _read(spec, value, read)
            except Invalid as exc:
                problems.append((spec.name.upper(), str(exc), value))
        if problems:
            raise SettingsInvalid(problems)
        for name, value in read.items():
            object.__setattr__(self, name, value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Settings:
        """A copy with the values in `update` instead, checked like any other settings."""
        current = {name: getattr(self, name) for name in self.model_fields}
        return type(self)(_env_file=None, **{**current, **(update or {})})

    @property
    def custom_plans(self) -> dict[str, Plan]:
        """The plans file's plans (validated at start, so this read cannot fail on a file left alone)."""
        return load_plans_file(self.quota_plans_file)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


Settings.model_fields = {spec.name: spec for spec in fields(Settings)}
if unparsed := [spec.name for spec in fields(Settings) if str(spec.type) not in _PARSERS]:
    raise TypeError(f"no parser for the annotation of {', '.join(unparsed)}: add one to _PARSERS")


def _read(spec: Field[Any], value: Any, earlier: Mapping[str, Any]) -> Any:
    """One setting's value, parsed by its annotation, held to its bounds and its rule."""
    value = _PARSERS[str(spec.type)](value)
    if value is not None and not isinstance(value, list):
        bounds = spec.metadata["bounds"]
        if any(bound is not None for bound in bounds.values()):
            value = bounded(value, **bounds)
    check = spec.metadata["check"]
    return check(value, earlier) if check is not None else value


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings, turning validation errors into one sentence per bad key."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except SettingsInvalid as exc:
        raise ConfigError(str(exc)) from None
