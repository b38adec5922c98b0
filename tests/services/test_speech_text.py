"""Text normalisation for speech: what /tts and reading mode say for a chat message."""

from __future__ import annotations

import pytest

from bot.services.speech_text import Names, clip, speakable

ADA, GENERAL, MODS = 111111111111111111, 222222222222222222, 333333333333333333
NAMES = Names(
    user={ADA: "Ada L"}.get,
    channel={GENERAL: "general"}.get,
    role={MODS: "Mods"}.get,
)


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        (f"hi <@{ADA}> and <@!{ADA}>", "hi Ada L and Ada L"),
        ("hi <@999999999999999999>", "hi someone"),
        (f"see <#{GENERAL}> with <@&{MODS}>", "see general with Mods"),
        ("see <#999999999999999999> <@&999999999999999999>", "see a channel a role"),
        ("nice <:pepe_hands:444444444444444444> <a:party:444444444444444445>", "nice pepe hands party"),
        ("read https://example.com/a?b=1 now", "read a link now"),
        ("read <https://example.com/a> and www.example.org", "read a link and a link"),
        ("the [docs](https://example.com/docs) say", "the docs say"),
        ("look:\n```py\nprint('secret')\n```\nok", "look: a code block. ok"),
        ("```unterminated code", "a code block"),
        ("**bold** *it* __under__ ~~gone~~ ||hidden|| `x = 1`", "bold it under gone hidden x = 1"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("# Title\n> quoted\n- one\n- two", "Title. quoted. one. two"),
        ("-# small print", "small print"),
        ("@everyone meet at <t:1700000000:R>", "everyone meet at a time"),
        ("escaped \\*stars\\*", "escaped *stars*"),
        ("  \n\t ", ""),
        ("```only code```", "a code block"),
    ],
)
def test_speakable(text: str, spoken: str) -> None:
    assert speakable(text, NAMES) == spoken


def test_unknown_names_without_lookups() -> None:
    assert speakable(f"<@{ADA}> in <#{GENERAL}>") == "someone in a channel"


def test_clip_cuts_at_a_word_boundary() -> None:
    assert clip("one two three four", 12) == "one two"
    assert clip("short", 12) == "short"
    assert clip("x" * 30, 10) == "x" * 10
