"""SQLAlchemy models: the whole persistent state of Concord."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so Alembic batch migrations on SQLite can find them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class GuildSettings(Base):
    """Per-guild configuration set by server admins; absent row means defaults."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_model: Mapped[str | None] = mapped_column(String(200))
    image_model: Mapped[str | None] = mapped_column(String(200))
    vision_model: Mapped[str | None] = mapped_column(String(200))
    tts_voice: Mapped[str | None] = mapped_column(String(100))
    disabled_capabilities: Mapped[list[Any]] = mapped_column(default=list)
    # A fresh server answers mentions everywhere (bot.services.guild_config.CHAT_EVERYWHERE_DEFAULT).
    chat_all_channels: Mapped[bool] = mapped_column(Boolean, default=True)
    max_input_chars: Mapped[int | None] = mapped_column(Integer)
    quota_bypass_role_id: Mapped[int | None] = mapped_column(BigInteger)
    log_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    # Role id (as string) -> plan name or custom numbers; JSON keeps it one row per guild.
    role_plans: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ChannelSettings(Base):
    """Per-channel overrides: persona/system prompt, chat on or off, model."""

    __tablename__ = "channel_settings"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    system_prompt: Mapped[str | None] = mapped_column(Text)
    chat_enabled: Mapped[bool | None] = mapped_column(Boolean)
    chat_model: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Conversation(Base):
    """One conversation per channel (a DM or a thread is its own channel)."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    messages: Mapped[list[ConversationMessage]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", passive_deletes=True
    )


class ConversationMessage(Base):
    """One turn of a conversation, as sent to or received from the model."""

    __tablename__ = "conversation_messages"
    # "Last N messages of a channel" is an index range scan on (conversation_id, id DESC).
    __table_args__ = (Index("ix_conversation_messages_recent", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # system | user | assistant
    author_id: Mapped[int | None] = mapped_column(BigInteger)
    author_name: Mapped[str | None] = mapped_column(String(100))
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    token_estimate: Mapped[int] = mapped_column(Integer, default=0)
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    discord_message_ids: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class QuotaUsage(Base):
    """Units a user consumed of one feature in one window; changed only by atomic statements.

    `scope` 0 is the user's global allowance (the operator's plan, shared by every server and DM); a
    guild id is that server's own, tighter caps for the user (its admins' role plans)."""

    __tablename__ = "quota_usage"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    scope: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, default=0, server_default="0"
    )
    feature: Mapped[str] = mapped_column(String(32), primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)  # minute | hour | day
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    """A long-running provider job (e.g. a song) that survives restarts."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "next_poll_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending|delivering|done|failed|cancelled
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str | None] = mapped_column(String(100))
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_ids: Mapped[list[Any]] = mapped_column(default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The interaction token lets the job edit its original reply within 15 minutes.
    interaction_token: Mapped[str | None] = mapped_column(String(200))
    interaction_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    next_poll_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Which process holds the job, so several processes on one database never poll it twice.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Rows made by one request (e.g. the clips of one /suno) share a group and one status message.
    group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # The message that delivered the result, once recorded (status "done"); see bot/services/song_jobs.py.
    delivery_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """A send-data endpoint key, scoped to one guild; only its SHA-256 hash is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConfigAudit(Base):
    """One change of a guild or channel setting: who, when, old → new."""

    __tablename__ = "config_audit"
    __table_args__ = (Index("ix_config_audit_guild_recent", "guild_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    actor_id: Mapped[int] = mapped_column(BigInteger)
    setting: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[int | None] = mapped_column(BigInteger)  # the channel or role the change is about
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SendDataAudit(Base):
    """Every send-data post, accepted or refused, from the HTTP endpoint or `/embed send`."""

    __tablename__ = "send_data_audit"
    __table_args__ = (
        Index("ix_send_data_audit_guild_recent", "guild_id", "id"),
        UniqueConstraint("refusal_key", "minute"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # http | command
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # the admin, for `/embed send`
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(Integer)  # HTTP status (200 accepted; 4xx/5xx refused)
    detail: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    remote: Mapped[str | None] = mapped_column(String(64))
    # Refused posts are aggregated: one row per key, address or admin per minute, `count` of them.
    # Accepted posts leave both NULL (one row each), which the unique constraint allows.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    refusal_key: Mapped[str | None] = mapped_column(String(80))
    minute: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class OperatorGrant(Base):
    """A plan the bot's owners gave a user, or everyone in a server (`/owner grant`). Rows are never
    deleted: a revoked or replaced grant keeps who gave and who took it, as the audit trail."""

    __tablename__ = "operator_grants"
    __table_args__ = (Index("ix_operator_grants_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(8))  # user | server
    subject_id: Mapped[int] = mapped_column(BigInteger)
    plan: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[int | None] = mapped_column(BigInteger)


class ImageResult(Base):
    """The settings behind one image result (or a prompt waiting to be drawn), so its buttons keep working
    after a restart: a button's custom_id names the row, which holds what 100 characters cannot."""

    __tablename__ = "image_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    settings: Mapped[str] = mapped_column(Text)  # ImageSettings as JSON
    provider: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TtsUserSettings(Base):
    """A user's own /tts defaults (the voice set with /tts voice), the same in every server."""

    __tablename__ = "tts_user_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    voice: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TtsReading(Base):
    """A server's reading mode: the channel whose messages are spoken while the bot is in voice."""

    __tablename__ = "tts_reading"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    announce_speaker: Mapped[bool] = mapped_column(Boolean, default=True)
    skip_bots: Mapped[bool] = mapped_column(Boolean, default=True)
    voice_members_only: Mapped[bool] = mapped_column(Boolean, default=True)
    required_role_id: Mapped[int | None] = mapped_column(BigInteger)
    max_chars: Mapped[int] = mapped_column(Integer, default=200)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
