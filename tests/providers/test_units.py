"""Pure pieces: the SSE and JSON-lines decoders, URL redaction, profile paths."""

from __future__ import annotations

import pytest

from bot.providers.config import ProviderConfig
from bot.providers.profiles import PROFILES
from bot.providers.redact import Redactor, safe_url
from bot.providers.streaming import JsonLinesDecoder, LineDecoder, SSEDecoder, StreamProtocolError
from bot.providers.transport import Provider as _Provider
from bot.providers.types import Capability


def feed_bytewise(decoder, data: bytes):
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out + decoder.flush()


def test_sse_events_survive_any_chunk_boundary():
    raw = b': keepalive\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    events = feed_bytewise(SSEDecoder(), raw)
    assert [e.data for e in events] == ['{"a": 1}', "line1\nline2", "[DONE]"]
    assert events[1].event == "x"
    assert events[2].is_done
    assert events[0].json() == {"a": 1}


def test_sse_lone_cr_line_endings():
    events = SSEDecoder().feed(b"data: a\r\rdata: b\r\r")
    assert [e.data for e in events] == ["a", "b"]


def test_sse_rejects_non_sse_lines_and_non_json_data():
    with pytest.raises(StreamProtocolError):
        SSEDecoder().feed(b"<html><body>oops</body></html>\n")
    [event] = SSEDecoder().feed(b"data: {not json\n\n")
    with pytest.raises(StreamProtocolError):
        event.json()


def test_line_length_is_capped():
    with pytest.raises(StreamProtocolError):
        LineDecoder(max_line=10).feed(b"x" * 11)


def test_json_lines_accepts_data_prefixes_and_blank_lines():
    raw = b'{"message": "a", "url": "u"}\n\ndata: {"message": "b", "url": ""}\ndata: [DONE]\n{"message": "c"}'
    items = feed_bytewise(JsonLinesDecoder(), raw)
    assert [i["message"] for i in items] == ["a", "b", "c"]


def test_json_lines_truncated_last_line_is_an_error():
    decoder = JsonLinesDecoder()
    assert decoder.feed(b'{"message": "a"}\n{"message": "b"') == [{"message": "a"}]
    with pytest.raises(StreamProtocolError):
        decoder.flush()


def test_json_lines_rejects_garbage():
    with pytest.raises(StreamProtocolError):
        JsonLinesDecoder().feed(b"{nope}\n")


def test_redactor_and_safe_url():
    redact = Redactor(["sk-abc123", "xyz"])
    assert redact("key sk-abc123 and Bearer sometoken") == "key *** and Bearer ***"
    assert redact("xyz") == "xyz"  # too short to be a key; not worth mangling text for
    assert (
        safe_url("https://u:p@h.example:8443/check?key=sk-1&x=2#f")
        == "https://h.example:8443/check?key=%2A%2A%2A&x=2"
    )


@pytest.mark.parametrize(
    ("profile", "base", "prefix", "capability", "url"),
    [
        (
            "digicord",
            "https://app.digicord.site",
            None,
            Capability.CHAT,
            "https://app.digicord.site/api/v1/chat/completions",
        ),
        (
            "digicord",
            "https://app.digicord.site/api/v1",
            None,
            Capability.MODELS,
            "https://app.digicord.site/api/v1/models",
        ),
        ("airforce", "https://api.airforce", None, Capability.IMAGINE, "https://api.airforce/v1/imagine"),
        ("airforce", "https://api.airforce", "", Capability.IMAGINE, "https://api.airforce/imagine"),
        ("airforce", "https://api.airforce/v1", None, Capability.SPEECH, "https://api.airforce/get-audio"),
        ("anyai", "https://api.discord.rocks", None, Capability.CHECK, "https://api.discord.rocks/check"),
        (
            "purlabs",
            "https://ai.purlabs.xyz",
            None,
            Capability.CHAT,
            "https://ai.purlabs.xyz/discord/chat/completions",
        ),
        ("openai", "https://api.openai.com/v1", None, Capability.MODELS, "https://api.openai.com/v1/models"),
    ],
)
def test_urls(profile, base, prefix, capability, url):
    config = ProviderConfig(name="p", profile=profile, base_url=base, path_prefix=prefix)
    provider = _Provider(config=config, profile=PROFILES[profile], semaphore=None)  # type: ignore[arg-type]
    assert provider.url(PROFILES[profile].endpoint(capability)) == url


def test_profile_capabilities_follow_the_seeds():
    assert Capability.SEND_DATA in PROFILES["digicord"].capabilities
    assert Capability.SUNO in PROFILES["airforce"].capabilities
    assert Capability.SUNO not in PROFILES["anyai"].capabilities
    assert Capability.IMAGE_GENERATIONS in PROFILES["anyai"].capabilities
    assert PROFILES["purlabs"].capabilities == {Capability.CHAT, Capability.CHAT_STREAM}


def test_a_key_straddling_the_error_cut_is_redacted_whole():
    from bot.providers.redact import REDACTOR
    from bot.providers.transport import status_failure

    key = "sk-straddle-0123456789abcdefXYZ"
    REDACTOR.add(key)
    body = ("x" * 70 + " " + key + " trailing").encode()
    failure = status_failure(500, {}, body)
    assert failure.reason.startswith("server error: xxx")
    assert "sk-straddle" not in failure.reason
    assert "***" in failure.reason
