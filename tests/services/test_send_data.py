"""The send-data schema: the seed's payload passes; every Discord limit is enforced and named by path."""

from __future__ import annotations

from typing import Any

import pytest

from bot.services.send_data import SendDataInvalid, parse_payload, parse_payload_text

SEED_EXAMPLE: dict[str, Any] = {
    "channelId": "123456789012345678",
    "content": "Hello",
    "embeds": [
        {
            "title": "Title here",
            "description": "",
            "url": "",
            "color": None,
            "image": {"url": ""},
            "author": {"name": ""},
            "footer": {"text": "", "icon_url": ""},
            "fields": [{"name": "", "value": "", "inline": True}],
        }
    ],
    "components": [],
}


def problem(data: Any, *, require_channel: bool = True) -> tuple[str, str]:
    with pytest.raises(SendDataInvalid) as raised:
        parse_payload(data, require_channel=require_channel)
    return raised.value.problems[0]


def message(**extra: Any) -> dict[str, Any]:
    return {"channelId": "1", "content": "hi", **extra}


def test_the_seed_example_is_accepted_with_blanks_meaning_unset() -> None:
    payload = parse_payload(SEED_EXAMPLE, require_channel=True)
    assert payload.channel_snowflake == 123456789012345678
    [embed] = payload.embeds
    assert embed.title == "Title here"
    assert embed.description is None and embed.url is None and embed.fields == []


@pytest.mark.parametrize(
    ("embed", "path", "limit"),
    [
        ({"title": "x" * 257}, "embeds[0].title", 256),
        ({"description": "x" * 4097}, "embeds[0].description", 4096),
        ({"title": "t", "author": {"name": "x" * 257}}, "embeds[0].author.name", 256),
        ({"title": "t", "footer": {"text": "x" * 2049}}, "embeds[0].footer.text", 2048),
        ({"title": "t", "fields": [{"name": "x" * 257, "value": "v"}]}, "embeds[0].fields[0].name", 256),
        (
            {
                "title": "t",
                "fields": [{"name": "n", "value": "v"}] * 3 + [{"name": "n", "value": "x" * 1025}],
            },
            "embeds[0].fields[3].value",
            1024,
        ),
    ],
)
def test_each_text_limit_names_its_field(embed: dict[str, Any], path: str, limit: int) -> None:
    at, text = problem(message(embeds=[embed]))
    assert at == path
    assert f"at most {limit}" in text


@pytest.mark.parametrize(
    "embed",
    [
        {"title": "x" * 256},
        {"description": "x" * 4096},
        {"title": "t", "fields": [{"name": "n" * 256, "value": "v" * 1024}]},
        {"title": "t", "fields": [{"name": "n", "value": "v"}] * 25},
        {"title": "t", "author": {"name": "a" * 256}, "footer": {"text": "f" * 2048}},
    ],
)
def test_values_at_the_limits_pass(embed: dict[str, Any]) -> None:
    assert parse_payload(message(embeds=[embed]), require_channel=True).embeds


def test_twenty_six_fields_is_one_too_many() -> None:
    at, text = problem(message(embeds=[{"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}]))
    assert at == "embeds[0].fields" and "at most 25" in text


def test_eleven_embeds_is_one_too_many() -> None:
    at, text = problem(message(embeds=[{"title": "t"}] * 11))
    assert at == "embeds" and "at most 10" in text


def test_six_thousand_characters_across_all_embeds() -> None:
    parse_payload(
        message(embeds=[{"description": "x" * 3000}, {"description": "y" * 3000}]), require_channel=True
    )
    at, text = problem(message(embeds=[{"description": "x" * 3000}, {"description": "y" * 3001}]))
    assert at == "embeds" and "6001" in text and "6000" in text


def test_content_is_at_most_2000_characters() -> None:
    assert problem({"channelId": "1", "content": "x" * 2001})[0] == "content"


def test_colour_range_and_hex_form() -> None:
    assert (
        parse_payload(message(embeds=[{"title": "t", "color": "#5865F2"}]), require_channel=True)
        .embeds[0]
        .color
        == 0x5865F2
    )
    assert problem(message(embeds=[{"title": "t", "color": 0x1000000}]))[0] == "embeds[0].color"
    assert problem(message(embeds=[{"title": "t", "color": -1}]))[0] == "embeds[0].color"


def test_urls_must_be_http() -> None:
    assert problem(message(embeds=[{"title": "t", "url": "javascript:alert(1)"}]))[0] == "embeds[0].url"
    assert (
        problem(message(embeds=[{"title": "t", "image": {"url": "file:///etc/passwd"}}]))[0]
        == "embeds[0].image.url"
    )


def test_a_field_needs_both_name_and_value() -> None:
    at, text = problem(message(embeds=[{"title": "t", "fields": [{"name": "n", "value": ""}]}]))
    assert (at, text) == ("embeds[0].fields[0].value", "must not be empty")


def test_empty_message_and_empty_embed_are_refused() -> None:
    assert problem({"channelId": "1"})[0] == "content"
    assert problem(message(embeds=[{"title": ""}]))[0] == "embeds[0]"


def test_channel_id_is_required_for_the_endpoint_and_must_be_digits() -> None:
    assert problem({"content": "x"}) == ("channelId", "is required")
    assert parse_payload({"content": "x"}, require_channel=False).channel_id is None
    assert problem({"channelId": "general", "content": "x"})[0] == "channelId"


def test_only_link_buttons_in_at_most_five_rows() -> None:
    row = {"type": 1, "components": [{"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"}]}
    assert (
        parse_payload(message(components=[row]), require_channel=True).components[0].components[0].label
        == "Docs"
    )
    primary = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "x"}]}
    assert problem(message(components=[primary]))[0] == "components[0].components[0].style"
    assert problem(message(components=[row] * 6))[0] == "components"


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(SendDataInvalid, match="not valid JSON"):
        parse_payload_text("{oops", require_channel=True)
    assert problem([SEED_EXAMPLE]) == ("payload", "must be a JSON object")


def test_every_problem_is_listed_for_the_json_error() -> None:
    with pytest.raises(SendDataInvalid) as raised:
        parse_payload(message(embeds=[{"title": "x" * 300, "description": "y" * 5000}]), require_channel=True)
    body = raised.value.as_json()
    assert {p["field"] for p in body["problems"]} == {"embeds[0].title", "embeds[0].description"}
    assert body["message"].startswith("`embeds[0].title` is 300 characters")
