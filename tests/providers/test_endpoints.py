"""Every non-chat endpoint of every profile, in the seed's own shape, plus its faults."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil

import pytest

from bot.providers import (
    AskChunk,
    Capability,
    CapabilityUnavailable,
    Embed,
    EmbedField,
    FluxRequest,
    ImageGenerationRequest,
    ImagineRequest,
    OutcomeUnknown,
    ParameterError,
    ProviderUnavailable,
    SendDataRequest,
    SpeechRequest,
    StreamEnd,
    SunoRequest,
    VisionRequest,
)
from tests.emulators.gateway import (
    BadBase64,
    BadSseLine,
    EmptyAudio,
    Hang,
    HtmlOk,
    Oversized,
    ServerError,
    StreamCut,
    WrongShape,
    media,
)
from tests.providers.conftest import TEST_KEY, collect, config_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "kind", "path", "expected"),
    [
        ("digicord", "chat", "/api/v1/models", "google/gemini-flash-1.5"),
        ("digicord", "vision", "/api/v1/vision-models", "meta-llama/llama-3.2-11b-vision-instruct"),
        ("digicord", "flux", "/api/v1/images/flux/models", "black-forest-labs/FLUX.1-schnell-Free"),
        ("airforce", "chat", "/v1/models", "llama-3.1-70b-chat"),
        ("airforce", "imagine", "/imagine/models", "flux-realism"),
        ("anyai", "chat", "/v1/models", "claude-3-opus-20240229"),
        ("openai", "chat", "/v1/models", "gpt-4o-mini"),
    ],
)
async def test_model_lists(profile, kind, path, expected, gateway, make_client):
    emu = await gateway(profile, api_key=TEST_KEY)
    client = make_client(config_for(emu))

    models = await client.list_models(kind)

    assert expected in [m.id for m in models]
    assert all(m.kind == kind and m.provider == profile for m in models)
    [sent] = emu.requests
    assert (sent.method, sent.path) == ("GET", path)
    assert sent.headers["Authorization"] == f"Bearer {TEST_KEY}"


async def test_anyai_lists_its_whole_catalogue_with_owners(gateway, make_client):
    emu = await gateway("anyai")
    models = await make_client(config_for(emu)).list_models()
    assert len(models) > 100
    assert next(m for m in models if m.id == "gpt-4o").owned_by == "openai"


async def test_model_lists_are_cached_with_a_ttl(gateway, make_client, fake_time):
    emu = await gateway("openai")
    client = make_client(config_for(emu))
    await client.list_models()
    await client.list_models()
    assert len(emu.requests) == 1
    fake_time.now += client.policy.models_ttl + 1
    await client.list_models()
    assert len(emu.requests) == 2
    await client.list_models(refresh=True)
    assert len(emu.requests) == 3


async def test_declared_models_are_listed_without_asking(gateway, make_client):
    emu = await gateway("openai")
    client = make_client(config_for(emu, models=("local-llama",)))
    assert [m.id for m in await client.list_models()] == ["local-llama"]
    assert emu.requests == []


async def test_model_lists_merge_providers_and_survive_one_failing(gateway, make_client):
    air = await gateway("airforce")
    dig = await gateway("digicord")
    client = make_client(config_for(air, retries=0), config_for(dig))
    air.inject("models", HtmlOk())
    ids = [m.id for m in await client.list_models()]
    assert "google/gemini-flash-1.5" in ids and "llama-3.1-70b-chat" not in ids


async def test_model_list_kind_without_a_provider(gateway, make_client):
    emu = await gateway("openai")
    with pytest.raises(CapabilityUnavailable):
        await make_client(config_for(emu)).list_models("flux")


# --- imagine ---------------------------------------------------------------------------------------


async def test_airforce_imagine_sends_its_query_and_returns_png(gateway, make_client):
    emu = await gateway("airforce", api_key=TEST_KEY)
    client = make_client(config_for(emu))

    image = await client.imagine(
        ImagineRequest(prompt="A beautiful landscape", size="16:9", seed=123456, model="flux-realism")
    )

    assert image.data.startswith(PNG_MAGIC) and image.content_type == "image/png"
    [sent] = emu.requests
    assert (sent.method, sent.path) == ("GET", "/v1/imagine")
    assert sent.query == {
        "prompt": "A beautiful landscape",
        "size": "16:9",
        "seed": "123456",
        "model": "flux-realism",
    }


async def test_airforce_imagine2(gateway, make_client):
    emu = await gateway("airforce")
    image = await make_client(config_for(emu)).imagine(ImagineRequest(prompt="fast", fast=True))
    assert image.data == emu.png
    assert emu.requests[0].path == "/v1/imagine2"


async def test_anyai_imagine_speaks_width_height_steps(gateway, make_client):
    emu = await gateway("anyai")
    request = ImagineRequest(
        prompt="A beautiful landscape",
        negative_prompt="rain",
        width=1024,
        height=1024,
        steps=50,
        seed=1,
        model="sdxl",
    )
    await make_client(config_for(emu)).imagine(request)
    assert emu.requests[0].query == {
        "prompt": "A beautiful landscape",
        "negative_prompt": "rain",
        "width": "1024",
        "height": "1024",
        "steps": "50",
        "seed": "1",
        "model": "sdxl",
    }


async def test_imagine_goes_to_the_dialect_that_can_say_it(gateway, make_client):
    air = await gateway("airforce")
    anyai = await gateway("anyai")
    client = make_client(config_for(air, priority=1), config_for(anyai, priority=2))

    await client.imagine(ImagineRequest(prompt="p", width=512, height=512))
    await client.imagine(ImagineRequest(prompt="p", size="1:1"))

    assert len(anyai.requests) == 1 and anyai.requests[0].query["width"] == "512"
    assert len(air.requests) == 1 and air.requests[0].query["size"] == "1:1"


@pytest.mark.parametrize(
    ("request_kwargs", "parameter"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "p", "size": "3:1"}, "size"),
        ({"prompt": "p", "model": "midjourney"}, "model"),
        ({"prompt": "p", "seed": -1}, "seed"),
        ({"prompt": "p", "steps": 0}, "steps"),
        ({"prompt": "p", "width": 10}, "width"),
        ({"prompt": "p", "model": "pluto", "width": 512}, "width"),
        ({"prompt": "p", "model": "flux", "negative_prompt": "x"}, "negative_prompt"),
    ],
)
async def test_imagine_parameter_errors(request_kwargs, parameter, gateway, make_client):
    air = await gateway("airforce")
    anyai = await gateway("anyai")
    client = make_client(config_for(air), config_for(anyai))
    with pytest.raises(ParameterError) as caught:
        await client.imagine(ImagineRequest(**request_kwargs))
    assert caught.value.parameter == parameter
    assert air.requests == [] and anyai.requests == []


@pytest.mark.parametrize("fault", [HtmlOk(), WrongShape(), ServerError(500)], ids=["html", "json", "5xx"])
async def test_imagine_non_image_answers_fail_over(fault, gateway, make_client):
    first = await gateway("airforce")
    second = await gateway("airforce")
    client = make_client(
        config_for(first, "first", retries=0, priority=1), config_for(second, "second", priority=2)
    )
    first.inject("imagine", fault)
    image = await client.imagine(ImagineRequest(prompt="p"))
    assert image.provider == "second"


async def test_oversized_image_is_refused(gateway, make_client):
    emu = await gateway("airforce")
    client = make_client(config_for(emu, max_image_bytes=100_000))
    emu.inject("imagine", Oversized(size=500_000, chunked=True))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.imagine(ImagineRequest(prompt="p"))
    assert "limit" in caught.value.attempts[0].reason
    assert len(emu.requests) == 1


# --- generations and flux ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["anyai", "openai"])
async def test_image_generations_url(profile, gateway, make_client):
    emu = await gateway(profile)
    result = await make_client(config_for(emu)).generate_images(
        ImageGenerationRequest(prompt="A futuristic cityscape", quality="hd", size="1024x1024")
    )
    assert result.images[0].url and result.images[0].url.startswith("http://127.0.0.1")
    sent = emu.requests[0]
    assert sent.path == "/v1/images/generations"
    assert sent.json == {
        "prompt": "A futuristic cityscape",
        "model": "dall-e-3",
        "n": 1,
        "quality": "hd",
        "response_format": "url",
        "size": "1024x1024",
    }


async def test_image_generations_b64_is_decoded(gateway, make_client):
    emu = await gateway("anyai")
    result = await make_client(config_for(emu)).generate_images(
        ImageGenerationRequest(prompt="x", model="dall-e-2", n=2, response_format="b64_json")
    )
    assert [img.data for img in result.images] == [emu.png, emu.png]


async def test_bad_base64_is_a_failure_not_garbage(gateway, make_client):
    first = await gateway("anyai")
    second = await gateway("openai")
    client = make_client(
        config_for(first, "first", priority=1, retries=0), config_for(second, "second", priority=2)
    )
    first.inject("images", BadBase64())
    result = await client.generate_images(ImageGenerationRequest(prompt="x", response_format="b64_json"))
    assert result.provider == "second"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n": 2}, "n"),
        ({"size": "512x512"}, "size"),
        ({"model": "dall-e-2", "quality": "hd"}, "quality"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"response_format": "png"}, "response_format"),
    ],
)
async def test_image_generation_parameter_errors(kwargs, parameter, gateway, make_client):
    emu = await gateway("anyai")
    values = {"prompt": "x", **kwargs}
    with pytest.raises(ParameterError) as caught:
        await make_client(config_for(emu)).generate_images(ImageGenerationRequest(**values))
    assert caught.value.parameter == parameter
    assert emu.requests == []


async def test_job_creating_post_is_not_resent_after_a_timeout(gateway, make_client):
    first = await gateway("anyai")
    second = await gateway("openai")
    client = make_client(
        config_for(first, "first", priority=1, timeout=0.05, retries=2),
        config_for(second, "second", priority=2),
    )
    first.inject("images", Hang())
    with pytest.raises(OutcomeUnknown) as caught:
        await client.generate_images(ImageGenerationRequest(prompt="x"))
    assert len(first.requests) == 1
    assert second.requests == []
    assert "not resent" in caught.value.user_message


async def test_job_creating_post_is_retried_after_a_clear_5xx(gateway, make_client):
    emu = await gateway("anyai")
    client = make_client(config_for(emu))
    emu.inject("images", ServerError(503))
    await client.generate_images(ImageGenerationRequest(prompt="x"))
    assert len(emu.requests) == 2


async def test_flux_generation(gateway, make_client):
    emu = await gateway("digicord", api_key=TEST_KEY)
    request = FluxRequest(
        prompt="a fox",
        model="black-forest-labs/FLUX.1-schnell-Free",
        steps=4,
        n=2,
        seed=7,
        width=1024,
        height=768,
        negative_prompt="blur",
    )
    result = await make_client(config_for(emu)).flux(request)
    assert [img.data for img in result.images] == [emu.png, emu.png]
    sent = emu.requests[0]
    assert (sent.method, sent.path) == ("POST", "/api/v1/images/flux/generations")
    assert sent.json == {
        "prompt": "a fox",
        "model": "black-forest-labs/FLUX.1-schnell-Free",
        "steps": 4,
        "n": 2,
        "seed": 7,
        "width": 1024,
        "height": 768,
        "negative_prompt": "blur",
    }


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"steps": 5}, "steps"),
        ({"steps": 0}, "steps"),
        ({"width": 1000}, "width"),
        ({"height": 1008}, "height"),
        ({"n": 5}, "n"),
        ({"prompt": " "}, "prompt"),
    ],
)
async def test_flux_parameter_errors(kwargs, parameter, gateway, make_client):
    emu = await gateway("digicord")
    values = {"prompt": "fox", **kwargs}
    with pytest.raises(ParameterError) as caught:
        await make_client(config_for(emu)).flux(FluxRequest(**values))
    assert caught.value.parameter == parameter
    assert emu.requests == []


async def test_flux_bad_base64(gateway, make_client):
    emu = await gateway("digicord")
    emu.inject("flux", BadBase64(), times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await make_client(config_for(emu)).flux(FluxRequest(prompt="fox"))
    assert caught.value.attempts[0].reason == "an image's base64 data was corrupt"


# --- vision -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["airforce", "anyai"])
async def test_vision_url_endpoint(profile, gateway, make_client):
    emu = await gateway(profile)
    result = await make_client(config_for(emu)).vision(
        VisionRequest(image_url="https://example.com/image.png", model="gemini-pro-vision")
    )
    assert result.text == emu.vision_reply
    sent = emu.requests[0]
    assert (sent.method, sent.path) == ("GET", "/v1/images/vision")
    assert sent.query == {"url": "https://example.com/image.png", "model": "gemini-pro-vision"}


async def test_vision_through_chat(gateway, make_client):
    emu = await gateway("digicord")
    result = await make_client(config_for(emu)).vision(
        VisionRequest(image_url="https://example.com/goku.png", prompt="who is this?")
    )
    assert result.text == emu.vision_reply
    content = emu.requests[0].json["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "who is this?"},
        {"type": "image_url", "image_url": "https://example.com/goku.png"},
    ]


async def test_vision_url_model_outside_the_three_goes_to_chat_vision(gateway, make_client):
    air = await gateway("airforce")
    dig = await gateway("digicord")
    client = make_client(config_for(air, priority=1), config_for(dig, priority=2))
    await client.vision(
        VisionRequest(image_url="https://e.x/a.png", model="meta-llama/llama-3.2-11b-vision-instruct")
    )
    assert air.requests == [] and len(dig.requests) == 1
    with pytest.raises(ParameterError) as caught:
        await make_client(config_for(air)).vision(VisionRequest(image_url="https://e.x/a.png", model="gpt-5"))
    assert caught.value.parameter == "model"


async def test_vision_html_answer_is_transient(gateway, make_client):
    emu = await gateway("airforce")
    emu.inject("vision", HtmlOk())
    result = await make_client(config_for(emu)).vision(VisionRequest(image_url="https://e.x/a.png"))
    assert result.text == emu.vision_reply
    assert len(emu.requests) == 2


# --- suno --------------------------------------------------------------------------------------------


async def test_suno_job_moves_from_generating_to_finished(gateway, make_client):
    emu = await gateway("airforce", api_key=TEST_KEY, suno_polls_before_finished=2)
    client = make_client(config_for(emu))

    job = await client.suno_create(SunoRequest(prompt="A catchy pop song with upbeat rhythm"))

    assert len(job.clip_ids) == 2 and job.provider == "airforce"
    sent = emu.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/suno")
    assert sent.json == {
        "model": "chirp-v3-5",
        "prompt": "A catchy pop song with upbeat rhythm",
        "instrumental": "false",
        "custom": "false",
    }
    statuses = [await client.suno_status(job.clip_ids[0], provider=job.provider) for _ in range(3)]
    assert [s.status for s in statuses] == ["generating", "generating", "finished"]
    done = statuses[-1]
    assert done.finished and done.audio_url and done.audio_url.endswith(".mp3")
    assert done.image_url and done.video_url
    assert emu.requests[-1].path == f"/v1/suno/{job.clip_ids[0]}"


async def test_suno_custom_and_limits(gateway, make_client):
    emu = await gateway("airforce")
    client = make_client(config_for(emu))
    await client.suno_create(SunoRequest(prompt="x" * 3000, custom=True, style="lofi", instrumental=True))
    assert emu.requests[0].json["custom"] == "true" and emu.requests[0].json["instrumental"] == "true"
    cases = [
        (SunoRequest(prompt="x" * 201), "prompt"),
        (SunoRequest(prompt=""), "prompt"),
        (SunoRequest(prompt="x" * 1251, custom=True, style="rock", model="chirp-v3-0"), "prompt"),
        (SunoRequest(prompt="x" * 3001, custom=True, style="rock"), "prompt"),
        (SunoRequest(prompt="x", custom=True), "style"),
        (SunoRequest(prompt="x", style="s" * 121), "style"),
        (SunoRequest(prompt="x", model="chirp-v9"), "model"),  # type: ignore[arg-type]
    ]
    for request, parameter in cases:
        with pytest.raises(ParameterError) as caught:
            await client.suno_create(request)
        assert caught.value.parameter == parameter, request
    assert len(emu.requests) == 1


async def test_suno_status_checks_clip_id_and_provider(gateway, make_client):
    emu = await gateway("airforce")
    client = make_client(config_for(emu))
    with pytest.raises(ParameterError) as caught:
        await client.suno_status("../../etc/passwd", provider="airforce")
    assert caught.value.parameter == "clip_id"
    with pytest.raises(ParameterError) as caught:
        await client.suno_status("abc", provider="nobody")
    assert caught.value.parameter == "provider"
    with pytest.raises(ProviderUnavailable) as caught:
        await client.suno_status("0000-unknown", provider="airforce")
    assert caught.value.attempts[0].status == 404
    assert emu.requests[-1].path == "/v1/suno/0000-unknown"


async def test_suno_create_timeout_is_not_resent(gateway, make_client):
    emu = await gateway("airforce")
    client = make_client(config_for(emu, timeout=0.05, retries=2))
    emu.inject("suno", Hang())
    with pytest.raises(OutcomeUnknown):
        await client.suno_create(SunoRequest(prompt="song"))
    assert len(emu.requests) == 1


# --- speech ---------------------------------------------------------------------------------------------


async def test_speech_returns_mp3_and_uses_the_bare_path(gateway, make_client):
    emu = await gateway("airforce", api_key=TEST_KEY)
    audio = await make_client(config_for(emu)).speech(SpeechRequest(text="Hello world", voice="sophia"))
    assert audio.data == emu.mp3 and audio.content_type == "audio/mpeg"
    sent = emu.requests[0]
    assert (sent.method, sent.path, sent.query) == (
        "GET",
        "/get-audio",
        {"text": "Hello world", "voice": "sophia"},
    )


@pytest.mark.parametrize("fault", [EmptyAudio(), HtmlOk(), WrongShape()], ids=["empty", "html", "json"])
async def test_speech_bad_audio_is_a_failure(fault, gateway, make_client):
    emu = await gateway("airforce")
    emu.inject("audio", fault, times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await make_client(config_for(emu)).speech(SpeechRequest(text="hi"))
    assert len(caught.value.attempts) == 2


async def test_speech_parameters(gateway, make_client):
    emu = await gateway("airforce")
    client = make_client(config_for(emu))
    for request, parameter in [
        (SpeechRequest(text=""), "text"),
        (SpeechRequest(text="x" * 1001), "text"),
        (SpeechRequest(text="hi", voice="bob"), "voice"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ParameterError) as caught:
            await client.speech(request)
        assert caught.value.parameter == parameter
    assert emu.requests == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_emulator_mp3_is_decodable():
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-f", "mp3", "-i", "pipe:0", "-f", "null", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate(media.mp3())
    assert process.returncode == 0, err.decode()


# --- ask ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["airforce", "anyai"])
async def test_ask_yields_json_lines(profile, gateway, make_client):
    emu = await gateway(profile)
    items = await collect(make_client(config_for(emu)).ask("What is ChatGPT"))
    chunks = [i for i in items if isinstance(i, AskChunk)]
    assert [c.message for c in chunks] == [m for m, _ in emu.ask_chunks]
    assert chunks[0].url == "https://en.wikipedia.org/wiki/ChatGPT"
    assert isinstance(items[-1], StreamEnd) and items[-1].complete
    assert items[-1].text == "ChatGPT is a chatbot made by OpenAI."
    assert (emu.requests[0].path, emu.requests[0].query) == ("/v1/ask", {"prompt": "What is ChatGPT"})


async def test_ask_breaks(gateway, make_client, caplog):
    first = await gateway("airforce")
    second = await gateway("anyai")
    client = make_client(
        config_for(first, "first", priority=1, retries=0), config_for(second, "second", priority=2)
    )

    # A malformed line is skipped and counted; the lines around it still make the answer.
    first.inject("ask", BadSseLine(after=1))
    with caplog.at_level(logging.WARNING):
        items = await collect(client.ask("q"))
    assert items[-1].complete and items[-1].provider == "first"
    assert items[-1].text == "ChatGPT is a chatbot made by OpenAI."
    assert "skipped 1 malformed GlobalAsk line(s)" in caplog.text

    first.inject("ask", ServerError(502))
    items = await collect(client.ask("q"))
    assert items[-1].complete and items[-1].provider == "second"

    first.inject("ask", StreamCut(after=1))
    items = await collect(client.ask("q"))
    assert items[-1].complete is False and items[-1].text == "ChatGPT is a chatbot "
    assert items[-1].provider == "first"


# --- check, send-data -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["airforce", "anyai"])
async def test_check_key_usage(profile, gateway, make_client, caplog):
    emu = await gateway(profile, api_key=TEST_KEY)
    caplog.set_level(logging.DEBUG)
    usage = await make_client(config_for(emu)).check_key()
    assert usage.plan == "premium"
    assert usage.values["usage.llms.day"] == 12
    assert "key" not in usage.values
    sent = emu.requests[0]
    assert (sent.path, sent.query) == ("/check", {"key": TEST_KEY})
    assert "Authorization" not in sent.headers
    assert TEST_KEY not in caplog.text
    assert "/check?key=%2A%2A%2A" in caplog.text


async def test_check_key_rejection_is_redacted(gateway, make_client, caplog):
    emu = await gateway("airforce", api_key="the-real-key-123")
    client = make_client(config_for(emu, api_key="a-wrong-key-456", retries=0))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.check_key("airforce")
    text = str(caught.value) + caplog.text
    assert "a-wrong-key-456" not in text
    assert caught.value.attempts[0].status == 401


async def test_check_key_needs_a_key(gateway, make_client):
    emu = await gateway("airforce")
    with pytest.raises(ParameterError):
        await make_client(config_for(emu)).check_key("airforce")


async def test_send_data(gateway, make_client):
    emu = await gateway("digicord", api_key=TEST_KEY)
    request = SendDataRequest(
        channel_id="123456789012345678",
        content="Hello",
        embeds=[
            Embed(
                title="Title here",
                color=0x5865F2,
                image_url="https://e.x/i.png",
                author_name="me",
                footer_text="foot",
                fields=(EmbedField("a", "b", inline=True),),
            )
        ],
    )
    result = await make_client(config_for(emu)).send_data(request)
    assert result.message_id is not None
    sent = emu.requests[0]
    assert (sent.method, sent.path) == ("POST", "/api/v1/send-data")
    assert sent.json == {
        "channelId": "123456789012345678",
        "content": "Hello",
        "embeds": [
            {
                "title": "Title here",
                "description": "",
                "url": "",
                "color": 0x5865F2,
                "image": {"url": "https://e.x/i.png"},
                "author": {"name": "me"},
                "footer": {"text": "foot", "icon_url": ""},
                "fields": [{"name": "a", "value": "b", "inline": True}],
            }
        ],
        "components": [],
    }


@pytest.mark.parametrize(
    ("request_kwargs", "parameter"),
    [
        ({"channel_id": "general"}, "channelId"),
        ({"content": "x" * 2001}, "content"),
        ({"content": ""}, "content"),
        ({"embeds": [Embed(title="t" * 257)]}, "embeds[0].title"),
        ({"embeds": [Embed(color=0x1000000)]}, "embeds[0].color"),
        ({"embeds": [Embed(fields=(EmbedField("", "v"),))]}, "embeds[0].fields[0].name"),
        ({"embeds": [Embed(description="d")] * 11}, "embeds"),
        ({"embeds": [Embed(description="d" * 4000), Embed(description="d" * 4000)]}, "embeds"),
    ],
)
async def test_send_data_parameter_errors(request_kwargs, parameter, gateway, make_client):
    emu = await gateway("digicord")
    values = {"channel_id": "123456789012345678", "content": "hi", **request_kwargs}
    with pytest.raises(ParameterError) as caught:
        await make_client(config_for(emu)).send_data(SendDataRequest(**values))
    assert caught.value.parameter == parameter
    assert emu.requests == []


async def test_capability_nobody_offers(gateway, make_client):
    emu = await gateway("purlabs")
    client = make_client(config_for(emu))
    with pytest.raises(CapabilityUnavailable) as caught:
        await client.speech(SpeechRequest(text="hi"))
    assert caught.value.user_message == "No configured AI provider offers speech."
    assert not client.available(Capability.SPEECH)
    assert client.capabilities() == {Capability.CHAT, Capability.CHAT_STREAM}


async def test_base64_payload_round_trip():
    assert base64.b64decode(base64.b64encode(media.png())).startswith(PNG_MAGIC)


async def test_send_data_dropped_connection_is_not_resent(gateway, make_client):
    from tests.emulators.gateway import Disconnect

    emu = await gateway("digicord")
    emu.inject("send-data", Disconnect())
    with pytest.raises(OutcomeUnknown):
        await make_client(config_for(emu, retries=2)).send_data(
            SendDataRequest(channel_id="123456789012345678", content="once")
        )
    assert len(emu.requests) == 1
