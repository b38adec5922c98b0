"""The scale-out path: Concord on a real PostgreSQL server, sharing state with another process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.quotas import Feature, QuotaService
from bot.store.engine import create_engine, create_sessionmaker
from tests.e2e.harness import (
    World,
    chat,
    emulator_settings,
    private_answer,
    providers_toml,
    running_bot,
    sent_messages,
)
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("openai", reply="Stored in PostgreSQL.")
    await emu.start()
    yield emu
    await emu.close()


async def test_conversation_on_postgresql_survives_a_restart(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, postgres_url: str, tmp_path: Path
) -> None:
    settings = emulator_settings(discord_emu, postgres_url, providers_file=providers_toml(gateway, tmp_path))
    async with running_bot(discord_emu, settings):  # migrations run at start, on PostgreSQL
        await chat(discord_emu, world.member, world.general, "remember the word teal")
    async with running_bot(discord_emu, settings):
        await chat(discord_emu, world.member, world.general, "which word?")
    history = [message["content"] for message in sent_messages(gateway)[1:]]
    assert history == [
        '[speaker: "bob"]\nremember the word teal',
        "Stored in PostgreSQL.",
        '[speaker: "bob"]\nwhich word?',
    ]


async def test_quota_is_shared_with_another_process_on_the_same_database(
    discord_emu: DiscordEmulator, world: World, gateway: GatewayEmulator, postgres_url: str, tmp_path: Path
) -> None:
    settings = emulator_settings(discord_emu, postgres_url, providers_file=providers_toml(gateway, tmp_path))
    async with running_bot(discord_emu, settings):
        # Another process: its own engine and quota service on the same database.
        other_engine = create_engine(postgres_url)
        try:
            other = QuotaService(create_sessionmaker(other_engine))
            for _ in range(9):  # the free plan allows 10 LLM turns a minute
                async with other.reserve(world.member.id, Feature.LLM) as reservation:
                    reservation.keep()
            await chat(discord_emu, world.member, world.general, "the tenth turn")
            itx = await discord_emu.run_command(
                world.member, "chat", {"prompt": "the eleventh"}, channel=world.general
            )
            assert "allowance for this minute (10/10)" in (await private_answer(itx))["content"]
            report = await other.report(world.member.id)
        finally:
            await other_engine.dispose()
    [llm] = [feature for feature in report.features if feature.feature is Feature.LLM]
    assert [window.used for window in llm.windows if window.window == "minute"] == [10]
    assert len(gateway.requests_for("chat")) == 1  # the denied turn never reached the provider
