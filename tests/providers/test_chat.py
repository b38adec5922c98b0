"""Chat, JSON and streamed, in every profile's dialect."""

from __future__ import annotations

import pytest

from bot.providers import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ImagePart,
    ParameterError,
    StreamEnd,
    TextPart,
)
from tests.providers.conftest import TEST_KEY, collect, config_for

PROFILES = ["digicord", "airforce", "anyai", "purlabs", "openai"]
CHAT_PATHS = {
    "digicord": "/api/v1/chat/completions",
    "airforce": "/v1/chat/completions",
    "anyai": "/v1/chat/completions",
    "purlabs": "/discord/chat/completions",
    "openai": "/v1/chat/completions",
}


def hello(**kwargs):
    return ChatRequest(messages=[ChatMessage.system("be brief"), ChatMessage.user("hi")], **kwargs)


@pytest.mark.parametrize("profile", PROFILES)
async def test_chat_json_each_profile(profile, gateway, make_client):
    emu = await gateway(profile, api_key=TEST_KEY)
    client = make_client(config_for(emu))

    reply = await client.chat(hello(model="m-1"))

    assert reply.text == f"Hello from {profile}."
    assert reply.provider == profile
    assert reply.usage is not None and reply.usage.total_tokens == 21
    [sent] = emu.requests_for("chat")
    assert sent.path == CHAT_PATHS[profile]
    assert sent.method == "POST"
    assert sent.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert TEST_KEY not in sent.path and TEST_KEY not in str(sent.query)
    assert sent.json["stream"] is False
    assert sent.json["model"] == "m-1"
    assert sent.json["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


async def test_purlabs_fields_reach_the_caller(gateway, make_client):
    emu = await gateway("purlabs")
    client = make_client(config_for(emu))

    reply = await client.chat(hello())

    assert reply.upstream == "Churchless"
    assert reply.overwritten is False
    assert reply.called_functions == ()
    assert [(r.provider, r.status) for r in reply.upstream_failures] == [("CattoGPT", 404), ("Pawan", 504)]
    # The HTML page a failed upstream returned is summarised, not passed on.
    assert reply.upstream_failures[0].reason == "an HTML error page"
    assert reply.upstream_failures[1].reason == "timeout of 60000ms exceeded"


async def test_digicord_reports_its_upstream(gateway, make_client):
    emu = await gateway("digicord")
    reply = await make_client(config_for(emu)).chat(hello())
    assert reply.upstream == "Fireworks"


@pytest.mark.parametrize(
    ("profile", "sent", "dropped"),
    [
        (
            "airforce",
            {"temperature": 0.7, "top_p": 0.5, "top_k": 0, "max_tokens": 2048},
            ["n", "stop", "user"],
        ),
        ("anyai", {"temperature": 0.7, "top_p": 0.5, "top_k": 0, "max_tokens": 2048}, ["presence_penalty"]),
        (
            "purlabs",
            {
                "temperature": 0.7,
                "n": 2,
                "stop": ["\n"],
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "logit_bias": {"50256": -100},
                "user": "u1",
            },
            ["top_k"],
        ),
        ("digicord", {}, ["temperature", "top_k", "max_tokens"]),
    ],
)
async def test_each_profile_sends_only_its_documented_parameters(
    profile, sent, dropped, gateway, make_client
):
    emu = await gateway(profile)
    client = make_client(config_for(emu))
    request = hello(
        temperature=0.7,
        top_p=0.5,
        top_k=0,
        max_tokens=2048,
        n=2,
        stop=["\n"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        user="u1",
    )

    await client.chat(request)

    body = emu.requests_for("chat")[0].json
    for name, value in sent.items():
        assert body[name] == value
    for name in dropped:
        assert name not in body


async def test_purlabs_n_returns_every_choice(gateway, make_client):
    emu = await gateway("purlabs")
    reply = await make_client(config_for(emu)).chat(hello(n=2))
    assert [c.index for c in reply.choices] == [0, 1]


async def test_function_message_goes_to_purlabs_not_airforce(gateway, make_client):
    air = await gateway("airforce")
    pur = await gateway("purlabs")
    client = make_client(config_for(air, priority=1), config_for(pur, priority=2))
    request = ChatRequest(
        messages=[
            ChatMessage.user("weather?"),
            ChatMessage(role="function", name="get_weather", content='{"temp": 21}'),
        ]
    )

    reply = await client.chat(request)

    assert reply.provider == "purlabs"
    assert air.requests == []
    assert emu_messages(pur)[1] == {"role": "function", "content": '{"temp": 21}', "name": "get_weather"}


def emu_messages(emu):
    return emu.requests_for("chat")[0].json["messages"]


async def test_image_parts_digicord_uses_bare_string_form(gateway, make_client):
    emu = await gateway("digicord")
    client = make_client(config_for(emu))
    request = ChatRequest(
        messages=[
            ChatMessage.user([TextPart("what is in this image?"), ImagePart("https://img.example/goku.png")])
        ],
        model="meta-llama/llama-3.2-11b-vision-instruct",
    )

    reply = await client.chat(request)

    assert reply.text == emu.vision_reply
    assert emu_messages(emu)[0]["content"] == [
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": "https://img.example/goku.png"},
    ]


async def test_image_parts_openai_uses_object_form(gateway, make_client):
    emu = await gateway("openai")
    client = make_client(config_for(emu))
    request = ChatRequest(
        messages=[ChatMessage.user([TextPart("look"), ImagePart("https://x.example/a.png", "low")])]
    )

    await client.chat(request)

    assert emu_messages(emu)[0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.example/a.png", "detail": "low"},
    }


async def test_image_message_skips_profiles_that_cannot_see(gateway, make_client):
    air = await gateway("airforce")
    dig = await gateway("digicord")
    client = make_client(config_for(air, priority=1), config_for(dig, priority=2))
    request = ChatRequest(messages=[ChatMessage.user([TextPart("?"), ImagePart("https://x.example/a.png")])])

    reply = await client.chat(request)

    assert reply.provider == "digicord"
    assert air.requests == []


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 11}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"logit_bias": {"42": 101}}, "logit_bias[42]"),
        ({"user": "u" * 300}, "user"),
        ({"model": ""}, "model"),
    ],
)
async def test_chat_parameter_errors_name_the_parameter_and_send_nothing(
    kwargs, parameter, gateway, make_client
):
    emu = await gateway("openai")
    client = make_client(config_for(emu))

    with pytest.raises(ParameterError) as caught:
        await client.chat(hello(**kwargs))

    assert caught.value.parameter == parameter
    assert f"`{parameter}`" in caught.value.user_message
    assert emu.requests == []


async def test_message_validation_names_the_message(gateway, make_client):
    emu = await gateway("openai")
    client = make_client(config_for(emu))
    with pytest.raises(ParameterError) as caught:
        await client.chat(
            ChatRequest(messages=[ChatMessage.user("ok"), ChatMessage(role="function", content="x")])
        )
    assert caught.value.parameter == "messages[1].name"
    with pytest.raises(ParameterError) as caught:
        await client.chat(ChatRequest(messages=[ChatMessage.user([ImagePart("ftp://x/y.png")])]))
    assert caught.value.parameter == "messages[0].content[0].image_url"
    with pytest.raises(ParameterError) as caught:
        await client.chat(ChatRequest(messages=[]))
    assert caught.value.parameter == "messages"
    assert emu.requests == []


async def test_anyai_message_length_cap_is_per_provider(gateway, make_client):
    anyai = await gateway("anyai")
    client = make_client(config_for(anyai, max_message_chars=1000))
    with pytest.raises(ParameterError) as caught:
        await client.chat(ChatRequest(messages=[ChatMessage.user("x" * 1001)]))
    assert caught.value.parameter == "messages[0].content"
    assert "1000" in caught.value.user_message
    assert anyai.requests == []


# --- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
async def test_stream_each_profile(profile, gateway, make_client):
    emu = await gateway(profile, reply="one two three four")
    client = make_client(config_for(emu))

    items = await collect(client.chat_stream(hello()))

    chunks = [i for i in items if isinstance(i, ChatChunk)]
    assert [c.text for c in chunks] == ["one", " two", " three", " four"]
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert end.complete is True
    assert end.text == "one two three four"
    assert end.finish_reason == "stop"
    assert end.provider == profile
    assert emu.requests_for("chat")[0].json["stream"] is True


async def test_stream_yields_before_the_stream_ends(gateway, make_client):
    emu = await gateway("openai", reply="a b c")
    from tests.emulators.gateway import StreamStall

    emu.inject("chat", StreamStall(after=2))
    client = make_client(config_for(emu, idle_timeout=0.05))
    stream = client.chat_stream(hello())
    first = await anext(stream)
    second = await anext(stream)
    assert (first.text, second.text) == ("a", " b")
    end = await anext(stream)
    assert isinstance(end, StreamEnd) and end.complete is False
    await stream.aclose()


async def test_stream_falls_back_to_json_when_gateway_ignores_stream(gateway, make_client, monkeypatch):
    emu = await gateway("openai")
    from tests.emulators.gateway import Status

    emu.inject(
        "chat",
        Status(
            200,
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "whole"},
                        "finish_reason": "stop",
                    }
                ]
            },
        ),
    )
    items = await collect(make_client(config_for(emu)).chat_stream(hello()))
    assert [type(i).__name__ for i in items] == ["ChatChunk", "StreamEnd"]
    assert items[-1].complete and items[-1].text == "whole"


async def test_every_chat_body_names_a_model(gateway, make_client, session):
    emu = await gateway("openai")
    auth = {"Authorization": f"Bearer {emu.api_key}"} if emu.api_key else {}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with session.post(emu.base_url + "/chat/completions", json=body, headers=auth) as raw:
        assert raw.status == 422  # as real OpenAI-compatible servers answer
        assert (await raw.json())["detail"][0]["loc"] == ["body", "model"]
    bare = make_client(config_for(emu, "bare"))
    await bare.chat(ChatRequest(messages=[ChatMessage.user("hi")]))  # learns its default from /models
    assert emu.requests_for("chat")[-1].json["model"] == bare.default_model("bare")
    client = make_client(config_for(emu, "o", models=("m-one", "m-two")))
    assert client.default_model("o") == "m-one"
    await client.chat(ChatRequest(messages=[ChatMessage.user("hi")]))
    assert emu.requests_for("chat")[-1].json["model"] == "m-one"
    chosen = make_client(config_for(emu, "c", models=("m-one",), default_model="m-two"))
    assert chosen.default_model("c") == "m-two"


async def test_purlabs_chats_name_its_documented_model(gateway, make_client, session):
    emu = await gateway("purlabs")
    auth = {"Authorization": f"Bearer {emu.api_key}"} if emu.api_key else {}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with session.post(emu.base_url + "/discord/chat/completions", json=body, headers=auth) as raw:
        assert raw.status == 400  # its request interface declares `model` required
    client = make_client(config_for(emu, "p"))
    assert client.default_model("p") == "clyde"
    await client.chat(ChatRequest(messages=[ChatMessage.user("hi")]))
    await collect(client.chat_stream(ChatRequest(messages=[ChatMessage.user("and streamed")])))
    assert [r.json.get("model") for r in emu.requests_for("chat")] == [None, "clyde", "clyde"]


async def test_a_provider_without_a_configured_default_learns_it_from_its_model_list(gateway, make_client):
    emu = await gateway("anyai")
    client = make_client(config_for(emu, "a"))
    await client.chat(ChatRequest(messages=[ChatMessage.user("hi")]))
    sent = emu.requests_for("chat")[-1].json["model"]
    assert sent and sent == client.default_model("a")


def test_closed_source_patterns():
    from bot.providers.models import is_closed_source

    for model in (
        "gpt-4o",
        "azure-gpt-4o",
        "ft:gpt-4o-mini:org::x",
        "anthropic.claude-3-opus",
        "openai/gpt-4o",
    ):
        assert is_closed_source(model), model
    for model in ("llama-3-70b", "mixtral-8x7b", "Qwen2-72B-Instruct"):
        assert not is_closed_source(model), model
    assert is_closed_source("acme-secret-1", ["acme-*"])
