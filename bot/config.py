"""The typed Settings object, read once from the environment and `.env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from bot.errors import ConfigError
from bot.services.fetcher import Allowlist
from bot.services.plans_file import PlansFileError, load_plans_file
from bot.services.quotas import BUILTIN_PLANS, Plan

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


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


class Settings(BaseModel):
    """Every bot-wide setting. Field names map to upper-case environment keys.

    Values given to the constructor win over the environment, which wins over the `.env` file, which wins
    over the defaults. (Read here rather than by pydantic-settings: that package cost a tenth of a second
    and 5 MB of every start.)"""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, _env_file: str | Path | None = ".env", **values: Any) -> None:
        super().__init__(**{**_from_environment(_env_file, set(type(self).model_fields)), **values})

    discord_token: SecretStr | None = Field(
        default=None, description="Bot token from the Discord developer portal (Bot → Reset Token)."
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///data/concord.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://user:pw@host/db.",
    )
    shard_count: int | None = Field(
        default=None, ge=1, description="Number of gateway shards; empty lets Discord decide."
    )
    dev_guild_id: int | None = Field(
        default=None, description="Guild id to sync slash commands to at start (instant, for development)."
    )
    owner_ids: list[int] = Field(
        default_factory=list, description="Comma-separated user ids with owner rights, besides the app owner."
    )
    message_content_intent: bool = Field(
        default=False,
        description="Request the privileged Message Content intent (enable it in the portal first).",
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    guild_ready_timeout: float = Field(
        default=2.0, gt=0, le=60, description="Seconds to wait for guilds to stream in before on_ready."
    )
    providers_file: Path | None = Field(
        default=None, description="Path to providers.toml listing the AI gateways (see README)."
    )
    discord_api_base: str = Field(
        default="https://discord.com/api/v10",
        description="Discord REST base URL; change only for a REST proxy or the test emulator.",
    )
    discord_gateway_url: str | None = Field(
        default=None, description="Discord gateway URL override; empty uses the one Discord advertises."
    )
    # --- chat (cogs/chat) ---
    chat_default_model: str | None = Field(
        default=None,
        description="Chat model when neither the user nor the guild picks one; empty: the provider's.",
    )
    chat_system_prompt: str | None = Field(
        default=None, description="Default persona for channels without their own system prompt."
    )
    chat_edit_interval: float = Field(
        default=1.0, ge=0.2, le=30, description="Seconds between edits of a reply while the model writes."
    )
    chat_history_budget: int = Field(
        default=3000, ge=0, le=1_000_000, description="How much history a model sees (see CHAT_HISTORY_UNIT)."
    )
    chat_history_unit: Literal["tokens", "chars"] = Field(
        default="tokens", description="Unit of CHAT_HISTORY_BUDGET: estimated tokens or characters."
    )
    chat_max_concurrency: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="Chat replies generated at once across all channels (provider calls are cheap I/O).",
    )
    chat_busy_wait: float = Field(
        default=5.0, ge=0, le=300, description="Seconds a turn waits for a free slot before 'busy' is shown."
    )
    chat_queue_limit: int = Field(
        default=10, ge=1, le=1000, description="Questions one channel may have waiting or running at once."
    )
    chat_max_tokens_free: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Longest reply (max_tokens) asked of a model on the free plan.",
    )
    chat_max_tokens_premium: int = Field(
        default=4096, ge=1, le=1_000_000, description="Longest reply (max_tokens) on a premium plan."
    )
    chat_max_pages: int = Field(
        default=5, ge=1, le=50, description="Messages one reply may fill before it is cut with a note."
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, le=600, description="Seconds replies in flight get to finish on SIGTERM/SIGINT."
    )
    chat_attachment_max_bytes: int = Field(
        default=32 * 1024, ge=0, le=8 * 1024 * 1024, description="Largest text file /chat accepts, in bytes."
    )
    # --- governance: the send-data HTTP endpoint (bot/http_api.py) ---
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the send-data/healthz HTTP endpoint; empty: off."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP endpoint listens on.")
    send_data_rate_limit: int = Field(
        default=30, ge=1, le=10_000, description="POST /send-data requests each API key may make per minute."
    )
    # --- songs (cogs/songs, bot/services/song_jobs.py) ---
    song_deadline: float = Field(
        default=900, ge=10, le=86_400, description="Seconds a song may take before its job gives up."
    )
    song_max_active: int = Field(
        default=2, ge=1, le=100, description="Song requests one user may have generating at once."
    )
    song_poll_first: float = Field(
        default=5, ge=0.05, le=600, description="Seconds before a new song's first status check."
    )
    song_poll_max: float = Field(
        default=30, ge=0.1, le=3600, description="Longest pause between status checks of one song."
    )
    song_lease: float = Field(
        default=60,
        ge=1,
        le=3600,
        description="Seconds a bot process holds a song job it polls; another takes it over after this.",
    )
    # --- web answers (cogs/ask.py) ---
    ask_edit_interval: float = Field(
        default=1.0, ge=0.2, le=30, description="Seconds between edits of an /ask answer as it arrives."
    )
    image_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest image the bot downloads: an attachment for /vision, a provider's image URL.",
    )
    # --- downloads (bot/services/fetcher.py) ---
    fetch_allowlist: list[str] = Field(
        default_factory=list,
        description="For tests/emulators only: comma-separated host[:port], IPs or CIDRs the downloader may "
        "reach although they are not public addresses. Empty in production.",
    )

    # --- voice: /tts (cogs/tts) ---
    tts_max_chars: int = Field(
        default=300, ge=1, le=1000, description="Longest text /tts say speaks, in characters."
    )
    tts_idle_timeout: float = Field(
        default=300.0, ge=1, le=86400, description="Seconds the bot stays in voice with nothing to say."
    )
    tts_connect_timeout: float = Field(
        default=15.0, gt=0, le=120, description="Seconds to wait for a voice connection before retrying."
    )
    tts_queue_limit: int = Field(
        default=20, ge=1, le=500, description="Speech requests waiting in one server's queue at most."
    )
    audit_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days send-data audit rows are kept before they are pruned."
    )
    # --- the operator's quota plans (bot/services/quotas.py, bot/services/plans_file.py) ---
    quota_plans_file: Path | None = Field(
        default=None, description="Optional TOML file of custom global plans (see README, Quotas)."
    )
    quota_default_plan: str = Field(
        default="free",
        description="Global plan of users without a grant: free, premium, unlimited or a plans-file plan.",
    )
    config_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="Seconds a guild's settings and a user's grants are kept in memory (0: read every time).",
    )

    @field_validator("owner_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("fetch_allowlist", mode="before")
    @classmethod
    def _split_entries(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("fetch_allowlist")
    @classmethod
    def _valid_allowlist(cls, value: list[str]) -> list[str]:
        Allowlist.parse(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "shard_count",
        "dev_guild_id",
        "providers_file",
        "discord_gateway_url",
        "chat_default_model",
        "chat_system_prompt",
        "http_port",
        "quota_plans_file",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("quota_plans_file")
    @classmethod
    def _plans_file_is_valid(cls, value: Path | None) -> Path | None:
        try:
            load_plans_file(value)
        except PlansFileError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("quota_default_plan")
    @classmethod
    def _known_plan(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        known = [*BUILTIN_PLANS]
        path = info.data.get("quota_plans_file")
        if path is not None:
            known += list(load_plans_file(path))
        if value not in known:
            raise ValueError(f"must be one of {', '.join(known)}")
        return value

    @property
    def custom_plans(self) -> dict[str, Plan]:
        """The plans file's plans (validated at start, so this read cannot fail on a file left alone)."""
        return load_plans_file(self.quota_plans_file)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings, turning validation errors into one sentence per bad key."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


# Values of these keys may hold credentials, so errors never echo them.
SECRET_KEYS = frozenset({"DISCORD_TOKEN", "DATABASE_URL"})


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        shown = "" if key in SECRET_KEYS else f" (got {error.get('input')!r})"
        lines.append(f"Invalid setting {key}: {error['msg']}{shown}.")
    return " ".join(lines)
