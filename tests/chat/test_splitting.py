"""Reply splitting: Discord's 2000-character limit, word boundaries and code fences."""

from __future__ import annotations

import random

import pytest

from bot.discordkit.splitting import close_open_fence, fence_after, split_message


def words(count: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    vocabulary = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa", "lambda"]
    return " ".join(rng.choice(vocabulary) for _ in range(count))


def test_short_text_is_one_message() -> None:
    assert split_message("hello world") == ["hello world"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t "])
def test_empty_or_blank_text_gives_no_message(text: str) -> None:
    assert split_message(text) == []


def test_exactly_2000_characters_is_one_message() -> None:
    text = "a" * 2000
    assert split_message(text) == [text]


def test_2001_characters_without_spaces_is_cut_hard() -> None:
    pages = split_message("a" * 2001)
    assert [len(p) for p in pages] == [2000, 1]


def test_prose_splits_between_words_and_loses_nothing() -> None:
    text = words(2000)
    pages = split_message(text)
    assert len(pages) > 1
    assert all(0 < len(p) <= 2000 for p in pages)
    assert " ".join(pages) == text  # the space at each cut is the only thing dropped
    vocabulary = set(text.split())
    for page in pages:
        assert page.split()[0] in vocabulary and page.split()[-1] in vocabulary


def test_a_space_right_at_the_limit_is_used() -> None:
    text = "a" * 2000 + " " + "b" * 10
    assert split_message(text) == ["a" * 2000, "b" * 10]


def test_prefers_a_line_break_in_the_second_half() -> None:
    first = words(300, seed=2)[:1500]
    text = first + "\n" + words(200, seed=3)
    pages = split_message(text)
    assert pages[0] == first


def test_open_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(200))
    text = "Here is the code:\n```python\n" + code + "\n```\nThat is all."
    pages = split_message(text)
    assert len(pages) >= 3
    for page in pages:
        assert len(page) <= 2000
        assert fence_after(page) is None, "every message has balanced fences"
    for page in pages[1:-1]:
        assert page.startswith("```python\n")
        assert page.endswith("\n```")
    # Joining the code back gives every original line exactly once, in order.
    lines = [line for page in pages for line in page.split("\n") if line.startswith("    value_")]
    assert lines == code.split("\n")
    assert pages[-1].endswith("That is all.")


def test_tilde_fences_and_fences_without_language() -> None:
    code = "\n".join("x" * 50 for _ in range(60))
    pages = split_message("~~~\n" + code + "\n~~~")
    assert len(pages) == 2
    assert pages[0].startswith("~~~\n") and pages[0].endswith("\n~~~")
    assert pages[1].startswith("~~~\n") and pages[1].endswith("~~~")


def test_closing_fence_fits_within_the_limit_at_the_edge() -> None:
    # The code line ends exactly at 2000 characters: the closer must still fit.
    opener = "```js\n"
    line = "y" * (2000 - len(opener))
    text = opener + line + "\n" + "z" * 20 + "\n```"
    pages = split_message(text)
    assert all(len(p) <= 2000 for p in pages)
    assert all(fence_after(p) is None for p in pages)
    assert "".join(pages).count("y") == len(line)
    assert "z" * 20 in pages[-1]


def test_a_fence_opener_is_never_left_dangling_at_the_end_of_a_message() -> None:
    prose = words(500, seed=4)[:1990]
    assert len(prose) == 1990
    text = prose + "\n```py\nprint('hi')\n```"
    pages = split_message(text)
    assert not pages[0].rstrip().endswith("```py")
    assert "```py\nprint('hi')\n```" in pages[1]


def test_no_message_is_empty_even_with_many_blank_lines() -> None:
    text = "a" * 1999 + "\n" * 50 + "b"
    pages = split_message(text)
    assert pages == ["a" * 1999, "b"]


def test_splitting_is_prefix_stable_for_streaming() -> None:
    text = words(1500, seed=5) + "\n```c\n" + "int x;\n" * 400 + "```\n" + words(500, seed=6)
    final = split_message(text)
    for cut in range(2500, len(text), 997):
        partial = split_message(text[:cut])
        assert partial[:-1] == final[: len(partial) - 1]


@pytest.mark.parametrize("seed", range(30))
def test_random_texts_respect_every_rule(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.3:
            lang = rng.choice(["", "python", "rust"])
            parts.append(f"```{lang}\n" + "codeline\n" * rng.randint(1, 200) + "```")
        elif kind < 0.4:
            parts.append("w" * rng.randint(1, 3000))
        else:
            parts.append(words(rng.randint(1, 400), seed=seed))
    text = rng.choice(["\n", "\n\n"]).join(parts)
    for limit in (2000, 500):
        pages = split_message(text, limit)
        assert pages
        assert all(p.strip() and len(p) <= limit for p in pages)
        assert all(fence_after(p) is None for p in pages[:-1])
        assert "".join(pages).count("codeline") == text.count("codeline")


def test_close_open_fence() -> None:
    assert close_open_fence("```py\nx = 1") == "```py\nx = 1\n```"
    assert close_open_fence("done\n```py\nx\n```") == "done\n```py\nx\n```"
    assert close_open_fence("plain") == "plain"
