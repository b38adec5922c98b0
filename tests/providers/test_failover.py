"""Routing, retries, Retry-After, circuit breaking, deadlines and body caps against the emulator."""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from bot.providers import ChatChunk, ChatMessage, ChatRequest, ProviderUnavailable, RetryPolicy, StreamEnd
from tests.emulators.gateway import (
    BadSseLine,
    Disconnect,
    Hang,
    HtmlOk,
    Oversized,
    RateLimited,
    ServerError,
    SlowFirstByte,
    Status,
    StreamCut,
    StreamEndsEarly,
    StreamStall,
    WrongShape,
)
from tests.providers.conftest import collect, config_for

REQUEST = ChatRequest(messages=[ChatMessage.user("hi")])


async def two(gateway, make_client, policy=None, **overrides):
    first = await gateway("openai", reply="from first")
    second = await gateway("anyai", reply="from second")
    client = make_client(
        config_for(first, "first", priority=1, **overrides),
        config_for(second, "second", priority=2, **overrides),
        policy=policy,
    )
    return first, second, client


async def test_priority_order_decides_who_answers(gateway, make_client):
    a = await gateway("openai", reply="a")
    b = await gateway("openai", reply="b")
    client = make_client(config_for(a, "a", priority=20), config_for(b, "b", priority=10))
    assert [c.name for c in client.providers] == ["b", "a"]
    assert (await client.chat(REQUEST)).text == "b"
    assert a.requests == []


async def test_model_routes_to_the_provider_that_lists_it(gateway, make_client):
    a = await gateway("openai", reply="a")
    b = await gateway("openai", reply="b")
    client = make_client(
        config_for(a, "a", priority=1, models=("gpt-4o",)), config_for(b, "b", priority=2, models=("x-1",))
    )
    reply = await client.chat(ChatRequest(messages=[ChatMessage.user("hi")], model="x-1"))
    assert reply.provider == "b"
    assert a.requests == []


async def test_unknown_model_is_a_parameter_error(gateway, make_client):
    a = await gateway("openai")
    client = make_client(config_for(a, models=("gpt-4o",)))
    with pytest.raises(Exception) as caught:
        await client.chat(ChatRequest(messages=[ChatMessage.user("hi")], model="nope"))
    assert getattr(caught.value, "parameter", None) == "model"
    assert a.requests == []


@pytest.mark.parametrize(
    "fault",
    [ServerError(502), ServerError(500), ServerError(503), HtmlOk(), WrongShape(), Status(408), Disconnect()],
    ids=["502-html", "500-html", "503-html", "200-html", "wrong-shape", "408", "disconnect"],
)
async def test_transient_failure_is_retried_on_the_same_provider(fault, gateway, make_client, fake_time):
    first, second, client = await two(gateway, make_client)
    first.inject("chat", fault)

    reply = await client.chat(REQUEST)

    assert reply.text == "from first"
    assert len(first.requests_for("chat")) == 2
    assert second.requests == []
    # Exponential backoff with jitter: base 0.5 s * (0.5 + 0.5 * random()), random() = 0.5 here.
    assert fake_time.sleeps == [pytest.approx(0.375)]


async def test_backoff_grows_and_then_fails_over(gateway, make_client, fake_time):
    first, _second, client = await two(gateway, make_client, RetryPolicy(breaker_threshold=10), retries=3)
    first.inject("chat", ServerError(502), times=4)

    reply = await client.chat(REQUEST)

    assert reply.text == "from second"
    assert len(first.requests_for("chat")) == 4
    assert fake_time.sleeps == [pytest.approx(0.375), pytest.approx(0.75), pytest.approx(1.5)]


async def test_every_provider_failing_reports_each_attempt(gateway, make_client):
    first, second, client = await two(gateway, make_client, retries=0)
    first.inject("chat", ServerError(502))
    second.inject("chat", Status(401, {"error": {"message": "bad key"}}))

    with pytest.raises(ProviderUnavailable) as caught:
        await client.chat(REQUEST)

    error = caught.value
    assert [(a.provider, a.status) for a in error.attempts] == [("first", 502), ("second", 401)]
    assert error.attempts[0].reason == "server error: an HTML error page"
    assert "refused" in error.attempts[1].reason
    assert error.user_message.endswith(".") and "http" not in error.user_message
    assert "first [502]" in str(error)


async def test_breaker_opening_mid_call_stops_retries(gateway, make_client, fake_time):
    first, _second, client = await two(gateway, make_client, RetryPolicy(breaker_threshold=2), retries=3)
    first.inject("chat", ServerError(502), times=4)

    assert (await client.chat(REQUEST)).text == "from second"
    assert len(first.requests_for("chat")) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_permanent_failures_are_not_retried_on_the_same_provider(
    status, gateway, make_client, fake_time
):
    first, _second, client = await two(gateway, make_client, retries=3)
    first.inject("chat", Status(status))

    reply = await client.chat(REQUEST)

    assert reply.text == "from second"
    assert len(first.requests_for("chat")) == 1
    assert fake_time.sleeps == []


async def test_retry_after_is_honoured(gateway, make_client, fake_time):
    first, second, client = await two(gateway, make_client)
    first.inject("chat", RateLimited(retry_after="2"))

    reply = await client.chat(REQUEST)

    assert reply.text == "from first"
    assert fake_time.sleeps == [2.0]
    assert second.requests == []


async def test_retry_after_as_http_date(gateway, make_client, fake_time):
    first, _, client = await two(gateway, make_client)
    first.inject("chat", RateLimited(retry_after=email.utils.formatdate(time.time() + 4, usegmt=True)))

    await client.chat(REQUEST)

    assert len(fake_time.sleeps) == 1
    assert 2.0 <= fake_time.sleeps[0] <= 4.0


async def test_retry_after_beyond_the_cap_fails_over_and_cools_the_provider(gateway, make_client, fake_time):
    first, _second, client = await two(gateway, make_client, policy=RetryPolicy(retry_after_cap=10))
    first.inject("chat", RateLimited(retry_after="120"))

    assert (await client.chat(REQUEST)).text == "from second"
    assert fake_time.sleeps == []
    # The rate-limited provider is left alone until its Retry-After has passed.
    assert (await client.chat(REQUEST)).text == "from second"
    assert len(first.requests_for("chat")) == 1
    fake_time.now += 121
    assert (await client.chat(REQUEST)).text == "from first"


async def test_429_without_retry_after_uses_backoff(gateway, make_client, fake_time):
    first, _, client = await two(gateway, make_client)
    first.inject("chat", RateLimited(retry_after=None))
    await client.chat(REQUEST)
    assert fake_time.sleeps == [pytest.approx(0.375)]


async def test_circuit_breaker_skips_a_failing_provider_then_probes_it_again(gateway, make_client, fake_time):
    policy = RetryPolicy(breaker_threshold=3, breaker_cooldown=30)
    first, second, client = await two(gateway, make_client, policy=policy, retries=0)
    first.inject("chat", ServerError(503), times=3)

    for _ in range(3):
        assert (await client.chat(REQUEST)).text == "from second"
    assert len(first.requests_for("chat")) == 3

    # Open: users no longer wait for the failing provider.
    assert (await client.chat(REQUEST)).text == "from second"
    assert len(first.requests_for("chat")) == 3

    second.inject("chat", ServerError(503))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.chat(REQUEST)
    assert caught.value.attempts[0].provider == "first"
    assert caught.value.attempts[0].reason.startswith("skipped: cooling down")

    # After the cooldown one request probes it; it has recovered, so it closes again.
    fake_time.now += 31
    assert (await client.chat(REQUEST)).text == "from first"
    assert len(first.requests_for("chat")) == 4


async def test_connection_refused_fails_over(gateway, make_client):
    dead = await gateway("openai")
    live = await gateway("openai", reply="alive")
    dead_config = config_for(dead, "dead", priority=1, retries=0)
    await dead.close()
    client = make_client(dead_config, config_for(live, "live", priority=2))

    reply = await client.chat(REQUEST)

    assert reply.text == "alive"


async def test_slow_first_byte_times_out_and_fails_over(gateway, make_client):
    first, _second, client = await two(gateway, make_client, retries=0, timeout=0.05)
    first.inject("chat", SlowFirstByte(1.0))

    reply = await client.chat(REQUEST)

    assert reply.text == "from second"


async def test_slow_first_byte_within_the_timeout_is_fine(gateway, make_client):
    first, _, client = await two(gateway, make_client, timeout=1.0)
    first.inject("chat", SlowFirstByte(0.05))
    assert (await client.chat(REQUEST)).text == "from first"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_refused_while_reading(chunked, gateway, make_client):
    first, _second, client = await two(gateway, make_client, max_json_bytes=64 * 1024)
    first.inject("chat", Oversized(size=1024 * 1024, chunked=chunked))

    reply = await client.chat(REQUEST)

    assert reply.text == "from second"
    assert len(first.requests_for("chat")) == 1


async def test_call_deadline_stops_retrying(gateway, make_client, fake_time):
    policy = RetryPolicy(call_deadline=3.0)
    first, second, client = await two(gateway, make_client, policy=policy, retries=3)
    first.inject("chat", RateLimited(retry_after="2"), times=4)
    second.inject("chat", ServerError(502), times=4)

    with pytest.raises(ProviderUnavailable):
        await client.chat(REQUEST)

    # first: one 2 s wait fits the 3 s budget, a second would not; second: 0.375 s fits, 0.75 s not.
    assert fake_time.sleeps == [2.0, pytest.approx(0.375)]
    assert len(first.requests_for("chat")) == 2
    assert len(second.requests_for("chat")) == 2


# --- streams -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [StreamCut(after=0), StreamEndsEarly(after=0), BadSseLine(after=0), ServerError(502), RateLimited("0")],
    ids=["cut", "ends-early", "bad-sse-line", "502", "429"],
)
async def test_stream_breaking_before_the_first_chunk_fails_over(fault, gateway, make_client):
    first, _second, client = await two(gateway, make_client, retries=0)
    first.inject("chat", fault)

    items = await collect(client.chat_stream(REQUEST))

    assert "".join(i.text for i in items if isinstance(i, ChatChunk)) == "from second"
    assert items[-1].complete is True
    assert items[-1].provider == "second"


async def test_stream_stalled_before_the_first_chunk_fails_over(gateway, make_client):
    first, _second, client = await two(
        gateway, make_client, retries=0, first_byte_timeout=0.05, idle_timeout=0.05
    )
    first.inject("chat", StreamStall(after=0))

    items = await collect(client.chat_stream(REQUEST))

    assert items[-1].complete is True and items[-1].provider == "second"


async def test_stream_slow_first_byte_fails_over(gateway, make_client):
    first, _second, client = await two(gateway, make_client, retries=0, first_byte_timeout=0.05)
    first.inject("chat", SlowFirstByte(1.0))

    items = await collect(client.chat_stream(REQUEST))

    assert items[-1].provider == "second"


@pytest.mark.parametrize(
    "fault",
    [StreamCut(after=2), StreamEndsEarly(after=2), BadSseLine(after=2), StreamStall(after=2)],
    ids=["cut", "ends-early", "bad-sse-line", "never-finished"],
)
async def test_stream_breaking_after_the_first_chunk_is_marked_incomplete(fault, gateway, make_client):
    first = await gateway("openai", reply="one two three four")
    second = await gateway("openai", reply="other")
    client = make_client(
        config_for(first, "first", priority=1, idle_timeout=0.05), config_for(second, "second", priority=2)
    )
    first.inject("chat", fault)

    items = await collect(client.chat_stream(REQUEST))

    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert end.complete is False
    assert end.text == "one two"
    assert end.provider == "first"
    assert end.reason and end.reason.startswith("broke after the first chunk")
    # The partial answer is kept; it is not silently replaced by another provider's.
    assert second.requests == []


async def test_stream_every_provider_failing_raises(gateway, make_client):
    first, second, client = await two(gateway, make_client, retries=0)
    first.inject("chat", StreamCut(after=0))
    second.inject("chat", HtmlOk())

    with pytest.raises(ProviderUnavailable) as caught:
        await collect(client.chat_stream(REQUEST))

    assert [a.provider for a in caught.value.attempts] == ["first", "second"]


async def test_stream_closed_early_by_the_caller_releases_the_connection(gateway, make_client):
    _first, _, client = await two(gateway, make_client)
    stream = client.chat_stream(REQUEST)
    assert isinstance(await anext(stream), ChatChunk)
    await stream.aclose()
    # The provider's slot is free again for the next call.
    assert (await client.chat(REQUEST)).text == "from first"


# --- secrets -------------------------------------------------------------------------------------------


async def test_keys_never_reach_errors_or_logs(gateway, make_client, caplog):
    key = "sk-live-SECRET-abcdef123456"
    emu = await gateway("openai", api_key=key)
    client = make_client(config_for(emu, retries=0))
    emu.inject("chat", Status(401, f"Invalid key {key} for Authorization: Bearer {key}"))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderUnavailable) as caught:
        await client.chat(REQUEST)

    assert emu.requests[0].headers["Authorization"] == f"Bearer {key}"
    error = caught.value
    assert key not in str(error) and key not in error.user_message
    assert all(key not in a.reason for a in error.attempts)
    assert "***" in error.attempts[0].reason
    assert key not in caplog.text
    assert key not in repr(error.__context__)
    assert key not in repr(client.providers[0])


async def test_purlabs_error_shape_in_a_200_is_a_failure_with_upstream_detail(gateway, make_client):
    pur = await gateway("purlabs")
    backup = await gateway("openai", reply="backup")
    client = make_client(
        config_for(pur, "pur", priority=1, retries=0), config_for(backup, "backup", priority=2, retries=0)
    )
    pur.inject(
        "chat",
        Status(
            200,
            {
                "status": 500,
                "message": "Some of our providers returned with errors.",
                "records": [
                    {
                        "provider": "FoxGPT",
                        "response": {"status": 403, "data": "<!doctype html><title>403</title>"},
                    },
                    {"provider": "Pawan", "response": {"status": 504, "data": "timeout of 60000ms exceeded"}},
                ],
            },
        ),
    )
    reply = await client.chat(REQUEST)
    assert reply.text == "backup"

    pur.inject("chat", Status(200, {"status": 500, "message": "all down", "records": []}))
    backup.inject("chat", ServerError(500))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.chat(REQUEST)
    assert caught.value.attempts[0].reason == "gateway error: all down"


async def test_purlabs_upstream_statuses_are_summarised(gateway, make_client):
    pur = await gateway("purlabs")
    client = make_client(config_for(pur, retries=0))
    body = {
        "status": 500,
        "message": "Some of our providers returned with errors.",
        "records": [{"provider": "FoxGPT", "response": {"status": 403, "data": "<!doctype html>"}}],
    }
    pur.inject("chat", Status(200, body))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.chat(REQUEST)
    assert "upstreams: FoxGPT 403" in caught.value.attempts[0].reason


async def test_idempotent_get_is_retried_after_a_timeout(gateway, make_client):
    emu = await gateway("openai")
    client = make_client(config_for(emu, timeout=0.05))
    emu.inject("models", Hang())
    models = await client.list_models()
    assert models and len(emu.requests) == 2


async def test_a_lone_provider_that_recovers_answers_the_next_call(gateway, make_client, fake_time):
    emu = await gateway("openai", reply="back")
    client = make_client(config_for(emu, "only", retries=0), policy=RetryPolicy(breaker_threshold=3))
    emu.inject("chat", ServerError(503), times=3)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await client.chat(REQUEST)
    # The breaker is open and no time has passed, yet the next call still tries (half-open probe).
    assert (await client.chat(REQUEST)).text == "back"
    assert len(emu.requests_for("chat")) == 4
    assert (await client.chat(REQUEST)).text == "back"


async def test_a_probe_that_fails_keeps_the_provider_resting_without_retries(gateway, make_client, fake_time):
    emu = await gateway("openai")
    client = make_client(config_for(emu, "only", retries=3), policy=RetryPolicy(breaker_threshold=1))
    emu.inject("chat", ServerError(503), times=2)
    with pytest.raises(ProviderUnavailable):
        await client.chat(REQUEST)
    assert len(emu.requests_for("chat")) == 1  # the breaker opened: no more retries in this call
    with pytest.raises(ProviderUnavailable):
        await client.chat(REQUEST)
    assert len(emu.requests_for("chat")) == 2  # one probe, not four tries
    assert (await client.chat(REQUEST)).text


@pytest.mark.parametrize("value", ["inf", "1e308", "99999999"])
async def test_retry_after_of_any_size_rests_a_provider_at_most_30_seconds(
    value, gateway, make_client, fake_time
):
    first, _second, client = await two(gateway, make_client)
    first.inject("chat", RateLimited(retry_after=value))
    assert (await client.chat(REQUEST)).text == "from second"
    assert (await client.chat(REQUEST)).text == "from second"
    fake_time.now += 30.5
    assert (await client.chat(REQUEST)).text == "from first"
