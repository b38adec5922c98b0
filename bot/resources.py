"""Opens the process-wide shared resources (HTTP session, database, provider client) and closes them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.logging_setup import add_secret
from bot.providers import USER_AGENT, ProviderClient, ProviderConfig, load_providers
from bot.store.engine import create_engine, create_sessionmaker


@dataclass(frozen=True)
class Resources:
    settings: Settings
    http_session: aiohttp.ClientSession
    db_engine: AsyncEngine
    db_sessions: async_sessionmaker[AsyncSession]
    providers: ProviderClient


def provider_configs(settings: Settings) -> list[ProviderConfig]:
    """Providers from PROVIDERS_FILE; keys come from the environment (and .env) and join the redactor."""
    if settings.providers_file is None:
        return []
    configs = load_providers(settings.providers_file, os.environ)
    for config in configs:
        if config.api_key is not None:
            add_secret(config.api_key.reveal())
    return configs


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Everything built once per process; closed in reverse order on the way out."""
    configs = provider_configs(settings)
    engine = create_engine(settings.database_url)
    try:
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as http_session:
            yield Resources(
                settings=settings,
                http_session=http_session,
                db_engine=engine,
                db_sessions=create_sessionmaker(engine),
                providers=ProviderClient(http_session, configs),
            )
    finally:
        await engine.dispose()
