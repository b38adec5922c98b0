"""Guild configuration: validated writes, effective reads, and an audit row per change."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.errors import FeatureUnavailable, InvalidInput
from bot.services.api_keys import MAX_ACTIVE_KEYS_PER_GUILD, ApiKeyService, hash_key
from bot.services.guild_config import ChannelChatSettings, GuildConfigService
from bot.services.quotas import Feature, Plan, QuotaService, Window, parse_custom_limits
from bot.store.engine import create_sessionmaker
from bot.store.models import ApiKey, ChannelSettings, ConfigAudit

GUILD, OTHER_GUILD = 10, 20
ADMIN = 1
USER = 7
CHANNEL, ROLE = 100, 200


@pytest.fixture
def config(db_sessions: async_sessionmaker[AsyncSession]) -> GuildConfigService:
    return GuildConfigService(db_sessions)


async def test_defaults_when_nothing_is_set(config: GuildConfigService) -> None:
    effective = await config.get(GUILD)
    assert effective.chat_model is None and effective.is_enabled("chat")
    assert effective.chat_all_channels and effective.chat_answers_in(CHANNEL)  # a fresh server chats
    chat = await config.chat_settings(GUILD, CHANNEL)
    assert chat.answers_mentions and chat.refusal() is None and chat.model is None
    assert (await config.channel(CHANNEL)).system_prompt is None
    assert await config.audit(GUILD) == []


async def test_model_must_be_in_the_list_and_is_stored_canonically(config: GuildConfigService) -> None:
    with pytest.raises(InvalidInput, match="isn't in the chat model list"):
        await config.set_model(GUILD, ADMIN, "chat", "gpt-99", known=["gpt-4o", "llama-3-70b"])
    with pytest.raises(InvalidInput, match="No vision model list"):
        await config.set_model(GUILD, ADMIN, "vision", "x", known=[])
    await config.set_model(GUILD, ADMIN, "chat", "GPT-4O", known=["gpt-4o", "llama-3-70b"])
    assert (await config.get(GUILD)).chat_model == "gpt-4o"
    await config.set_model(GUILD, ADMIN, "chat", None, known=[])
    assert (await config.get(GUILD)).chat_model is None
    [cleared, chosen] = await config.audit(GUILD)
    assert (chosen.setting, chosen.old_value, chosen.new_value, chosen.actor_id) == (
        "chat_model",
        None,
        "gpt-4o",
        ADMIN,
    )
    assert (cleared.old_value, cleared.new_value) == ("gpt-4o", None)


async def test_capabilities_switch_off_and_on(config: GuildConfigService) -> None:
    await config.set_capability(GUILD, ADMIN, "vision", False)
    with pytest.raises(FeatureUnavailable):
        await config.ensure_enabled(GUILD, "vision")
    await config.ensure_enabled(None, "vision")  # DMs are not governed by any server
    await config.ensure_enabled(OTHER_GUILD, "vision")
    await config.set_capability(GUILD, ADMIN, "vision", True)
    await config.ensure_enabled(GUILD, "vision")
    with pytest.raises(InvalidInput):
        await config.set_capability(GUILD, ADMIN, "teleport", False)
    assert [e.new_value for e in await config.audit(GUILD)] == ["[]", '["vision"]']


async def test_channels_must_be_in_the_guild(config: GuildConfigService) -> None:
    with pytest.raises(InvalidInput):
        await config.set_log_channel(GUILD, ADMIN, CHANNEL, channel_guild_id=OTHER_GUILD)
    with pytest.raises(InvalidInput):
        await config.set_chat_channel(GUILD, ADMIN, CHANNEL, True, channel_guild_id=OTHER_GUILD)
    await config.set_chat_channel(GUILD, ADMIN, CHANNEL, True, channel_guild_id=GUILD)
    await config.set_log_channel(GUILD, ADMIN, CHANNEL, channel_guild_id=GUILD)
    effective = await config.get(GUILD)
    assert effective.chat_channel_ids == {CHANNEL} and effective.log_channel_id == CHANNEL
    assert await config.audit(GUILD, limit=1)


async def test_where_chat_answers_mentions(config: GuildConfigService) -> None:
    thread, elsewhere, off = 999, 101, 102
    await config.set_chat_channel(GUILD, ADMIN, CHANNEL, True, channel_guild_id=GUILD)
    await config.set_chat_channel(GUILD, ADMIN, off, False, channel_guild_id=GUILD)

    async def answered() -> list[bool]:
        effective = await config.get(GUILD)
        by_config = [
            effective.chat_answers_in(CHANNEL),
            effective.chat_answers_in(thread, parent_id=CHANNEL),
            effective.chat_answers_in(elsewhere),
            effective.chat_answers_in(off),
            effective.chat_answers_in(thread + 1, parent_id=off),
        ]
        # The settings chat reads say the same.
        by_chat = [
            (await config.chat_settings(GUILD, cid, parent)).answers_mentions
            for cid, parent in [
                (CHANNEL, None),
                (thread, CHANNEL),
                (elsewhere, None),
                (off, None),
                (thread + 1, off),
            ]
        ]
        assert by_chat == by_config
        return by_config

    # Everywhere (the default), except a channel switched off and its threads.
    assert await answered() == [True, True, True, False, False]
    await config.set_chat_all_channels(GUILD, ADMIN, False)
    assert await answered() == [True, True, False, False, False]
    await config.set_capability(GUILD, ADMIN, "chat", False)
    assert await answered() == [False] * 5
    assert (await config.get(OTHER_GUILD)).chat_answers_in(elsewhere)  # another server is untouched


async def test_slash_chat_is_refused_only_where_chat_is_switched_off(config: GuildConfigService) -> None:
    elsewhere, off = 101, 102
    await config.set_chat_all_channels(GUILD, ADMIN, False)
    await config.set_chat_channel(GUILD, ADMIN, off, False, channel_guild_id=GUILD)
    # Not chosen for mentions, yet /chat (an explicit request) works there.
    assert (await config.chat_settings(GUILD, elsewhere)).refusal() is None
    assert not (await config.chat_settings(GUILD, elsewhere)).answers_mentions
    assert (await config.chat_settings(GUILD, off)).refusal() == "Chat is switched off in this channel."
    assert (await config.chat_settings(GUILD, 7, parent_id=off)).refusal() is not None  # its threads too
    await config.set_capability(GUILD, ADMIN, "chat", False)
    assert (await config.chat_settings(GUILD, elsewhere)).refusal() == "Chat is switched off in this server."
    # DMs are governed by no server: nothing switched off there, and nothing read for them.
    dm = await config.chat_settings(None, off)
    assert dm == ChannelChatSettings() and dm.refusal() is None and dm.answers_mentions


async def test_chat_settings_come_from_the_thread_then_its_channel_then_the_guild(
    config: GuildConfigService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    thread = 999
    await config.set_model(GUILD, ADMIN, "chat", "guild-model", known=["guild-model"])
    await config.set_max_input_chars(GUILD, ADMIN, 300)
    await config.set_system_prompt(GUILD, ADMIN, CHANNEL, "Be brief.", channel_guild_id=GUILD)
    settings = await config.chat_settings(GUILD, thread, parent_id=CHANNEL)
    assert (settings.system_prompt, settings.model, settings.max_input_chars) == (
        "Be brief.",
        "guild-model",
        300,
    )
    # A thread's own value wins over its parent's; what it doesn't set still comes from the parent.
    await config.set_system_prompt(GUILD, ADMIN, thread, "Be thorough.", channel_guild_id=GUILD)
    await config.set_chat_channel(GUILD, ADMIN, CHANNEL, False, channel_guild_id=GUILD)
    async with db_sessions() as session, session.begin():
        row = await session.get(ChannelSettings, CHANNEL)
        assert row is not None
        row.chat_model = "channel-model"
    settings = await config.chat_settings(GUILD, thread, parent_id=CHANNEL)
    assert (settings.system_prompt, settings.model) == ("Be thorough.", "channel-model")
    assert settings.channel_switch is False and settings.refusal() is not None
    await config.set_chat_channel(GUILD, ADMIN, thread, True, channel_guild_id=GUILD)
    assert (await config.chat_settings(GUILD, thread, parent_id=CHANNEL)).refusal() is None
    assert (await config.chat_settings(GUILD, CHANNEL)).system_prompt == "Be brief."


async def test_system_prompt_per_channel(config: GuildConfigService) -> None:
    await config.set_system_prompt(GUILD, ADMIN, CHANNEL, "You are a pirate.", channel_guild_id=GUILD)
    assert (await config.channel(CHANNEL)).system_prompt == "You are a pirate."
    with pytest.raises(InvalidInput, match="at most 4000"):
        await config.set_system_prompt(GUILD, ADMIN, CHANNEL, "x" * 4001, channel_guild_id=GUILD)
    await config.set_system_prompt(GUILD, ADMIN, CHANNEL, "  ", channel_guild_id=GUILD)
    assert (await config.channel(CHANNEL)).system_prompt is None
    [cleared, first] = await config.audit(GUILD)
    assert (first.target_id, first.new_value, cleared.old_value) == (
        CHANNEL,
        "You are a pirate.",
        "You are a pirate.",
    )


async def test_role_plan_takes_effect_in_quotas(
    config: GuildConfigService, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    quotas = QuotaService(db_sessions)

    async def server_plan() -> Plan | None:
        return (await quotas.context(USER, GUILD, [ROLE])).server_plan

    await config.set_role_plan(GUILD, ADMIN, ROLE, "premium", role_guild_id=GUILD)
    assert (plan := await server_plan()) is not None and plan.name == "premium"
    await config.set_role_plan(GUILD, ADMIN, ROLE, parse_custom_limits("llm.minute=3"), role_guild_id=GUILD)
    assert (plan := await server_plan()) is not None and plan.caps(Feature.LLM)[Window.MINUTE] == 3
    await config.set_bypass_role(GUILD, ADMIN, ROLE, role_guild_id=GUILD)
    assert await server_plan() is None  # the bypass role skips the server's own caps
    with pytest.raises(InvalidInput):
        await config.set_role_plan(GUILD, ADMIN, ROLE, "platinum", role_guild_id=GUILD)
    with pytest.raises(InvalidInput):
        await config.set_bypass_role(GUILD, ADMIN, ROLE, role_guild_id=OTHER_GUILD)
    await config.set_role_plan(GUILD, ADMIN, ROLE, None, role_guild_id=GUILD)
    assert (await config.get(GUILD)).role_plans == {}


async def test_max_input_chars_range(config: GuildConfigService) -> None:
    await config.set_max_input_chars(GUILD, ADMIN, 2500)
    assert (await config.get(GUILD)).max_input_chars == 2500
    with pytest.raises(InvalidInput):
        await config.set_max_input_chars(GUILD, ADMIN, 0)


async def test_api_keys_are_hashed_scoped_and_revocable(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    keys = ApiKeyService(db_sessions)
    created = await keys.create(GUILD, "dashboard", ADMIN)
    async with db_sessions() as session:
        row = await session.get(ApiKey, created.id)
        assert row is not None and row.key_hash == hash_key(created.key) and created.key not in row.key_hash
    found = await keys.authenticate(created.key)
    assert found is not None and found.guild_id == GUILD
    assert await keys.authenticate(created.key + "x") is None
    assert [k.name for k in await keys.list(GUILD)] == ["dashboard"]
    assert await keys.list(OTHER_GUILD) == []
    with pytest.raises(InvalidInput):
        await keys.revoke(OTHER_GUILD, created.id)  # another guild's admin can't revoke it
    await keys.revoke(GUILD, created.id)
    assert await keys.authenticate(created.key) is None
    assert await keys.list(GUILD) == []
    assert [k.revoked_at is not None for k in await keys.list(GUILD, include_revoked=True)] == [True]


# --- no lost updates on PostgreSQL (issue 10, item 7) -------------------------------------------------


async def test_twenty_concurrent_changes_on_postgresql_lose_none(pg_engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(pg_engine)
    config = GuildConfigService(sessions)
    roles = [ROLE + n for n in range(20)]
    # Each change reads the guild's JSON column and writes it back: without the row lock, concurrent
    # transactions overwrite each other's entries.
    await asyncio.gather(
        *(config.set_role_plan(GUILD, ADMIN, role, "premium", role_guild_id=GUILD) for role in roles)
    )
    settings = await config.get(GUILD)
    assert sorted(settings.role_plans) == sorted(str(role) for role in roles)
    capabilities = ["image", "imagine", "vision", "ask", "songs", "tts"]
    await asyncio.gather(
        *(config.set_capability(OTHER_GUILD, ADMIN, capability, False) for capability in capabilities * 3)
    )
    assert sorted((await config.get(OTHER_GUILD)).disabled_capabilities) == sorted(capabilities)
    async with sessions() as session:
        audited = await session.scalar(select(func.count()).select_from(ConfigAudit))
    assert audited == 20 + 18


async def test_concurrent_key_creation_on_postgresql_cannot_pass_the_cap(pg_engine: AsyncEngine) -> None:
    keys = ApiKeyService(create_sessionmaker(pg_engine))

    async def create(n: int) -> bool:
        try:
            await keys.create(GUILD, f"key {n}", ADMIN)
        except InvalidInput:
            return False
        return True

    created = await asyncio.gather(*(create(n) for n in range(20)))
    assert sum(created) == MAX_ACTIVE_KEYS_PER_GUILD
    assert len(await keys.list(GUILD)) == MAX_ACTIVE_KEYS_PER_GUILD
