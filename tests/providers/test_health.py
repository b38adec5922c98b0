"""`doctor`'s view of each provider: reachable or not, why, and what to do."""

from __future__ import annotations

from bot.providers import ProviderConfig
from tests.emulators.gateway import HtmlOk, ServerError, Status
from tests.providers.conftest import TEST_KEY, config_for


async def test_health_of_every_profile(gateway, make_client):
    emus = [
        await gateway(p, api_key=TEST_KEY) for p in ("digicord", "airforce", "anyai", "purlabs", "openai")
    ]
    client = make_client(*(config_for(e, priority=i) for i, e in enumerate(emus)))

    report = await client.health()

    assert [h.name for h in report] == ["digicord", "airforce", "anyai", "purlabs", "openai"]
    for health, emu in zip(report, emus, strict=True):
        assert health.reachable, health
        assert health.problem is None and health.fix is None
        assert health.latency_ms is not None and health.latency_ms >= 0
        assert health.base_url == emu.base_url
        assert emu.requests[0].headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert "send_data" in report[0].capabilities and "suno" in report[1].capabilities
    assert "google/gemini-flash-1.5" in report[0].models
    assert report[3].capabilities == ("chat", "chat_stream")


async def test_health_reports_problems_with_fixes(gateway, make_client, session):
    refused = await gateway("openai", api_key="right-key-123")
    html = await gateway("airforce")
    broken = await gateway("anyai")
    dead = await gateway("digicord")
    dead_config = config_for(dead, "dead")
    await dead.close()
    html.inject("models", HtmlOk())
    broken.inject("models", ServerError(503))
    client = make_client(
        config_for(refused, "refused", api_key="wrong-key-456"),
        config_for(html, "html"),
        config_for(broken, "broken"),
        dead_config,
    )

    by_name = {h.name: h for h in await client.health()}

    assert by_name["refused"].reachable and "refused the API key (401)" in by_name["refused"].problem
    assert "TEST_KEY" in by_name["refused"].fix
    assert "wrong-key-456" not in repr(by_name["refused"])
    assert by_name["html"].reachable and "HTML" in by_name["html"].problem
    assert "base_url" in by_name["html"].fix
    assert "503" in by_name["broken"].problem
    assert not by_name["dead"].reachable and by_name["dead"].latency_ms is None
    assert "could not be reached" in by_name["dead"].problem and "base_url" in by_name["dead"].fix


async def test_health_missing_models_path_suggests_the_prefix(gateway, make_client):
    emu = await gateway("airforce")
    emu.inject("models", Status(404, "Not Found"))
    [health] = await make_client(config_for(emu)).health()
    assert "404" in health.problem and "path_prefix" in health.fix and "/v1" in health.fix


async def test_health_never_shows_credentials_in_the_url(make_client):
    config = ProviderConfig(
        name="x", profile="openai", base_url="http://127.0.0.1:9/v1", connect_timeout=0.05
    )
    [health] = await make_client(config).health()
    assert health.base_url == "http://127.0.0.1:9/v1"
    assert not health.reachable


async def test_health_shows_each_providers_default_model(gateway, make_client):
    from tests.providers.conftest import config_for

    listed = await gateway("openai")
    learnt = await gateway("anyai")
    client = make_client(config_for(listed, "listed", models=("m-one",)), config_for(learnt, "learnt"))
    by_name = {h.name: h for h in await client.health()}
    assert by_name["listed"].default_model == "m-one"
    assert by_name["learnt"].default_model == by_name["learnt"].models[0]
