"""Fixtures for the provider client tests: gateway emulators, a shared session, a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bot.providers import ProviderClient, ProviderConfig, RetryPolicy, Secret
from tests.emulators.gateway import GatewayEmulator

TEST_KEY = "sk-test-0123456789abcdef"


@dataclass
class FakeTime:
    """An injectable clock; `sleep` advances it instead of waiting."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def config_for(emu: GatewayEmulator, name: str | None = None, **overrides: Any) -> ProviderConfig:
    """A provider pointing at `emu`; fast timeouts so fault tests finish quickly."""
    key = overrides.pop("api_key", emu.api_key)
    values: dict[str, Any] = {
        "connect_timeout": 1.0,
        "timeout": 2.0,
        "first_byte_timeout": 1.0,
        "idle_timeout": 0.3,
        "stream_timeout": 5.0,
        "retries": 1,
    }
    values.update(overrides)
    return ProviderConfig(
        name=name or emu.profile,
        profile=emu.profile,  # type: ignore[arg-type]
        base_url=emu.base_url,
        api_key=Secret(key) if key else None,
        api_key_env="TEST_KEY" if key else None,
        **values,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., Awaitable[GatewayEmulator]]]:
    """`await gateway("airforce", api_key=...)` starts an emulator that is closed after the test."""
    started: list[GatewayEmulator] = []

    async def start(profile: str, **kwargs: Any) -> GatewayEmulator:
        emu = GatewayEmulator(profile, **kwargs)
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(session: aiohttp.ClientSession, fake_time: FakeTime) -> Callable[..., ProviderClient]:
    def make(*configs: ProviderConfig, policy: RetryPolicy | None = None) -> ProviderClient:
        return ProviderClient(
            session,
            configs,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            random=lambda: 0.5,
            policy=policy,
        )

    return make


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]
