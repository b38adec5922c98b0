"""Chat text turned into what a person would say aloud: names for mentions, no markdown, no URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

NameLookup = Callable[[int], str | None]


def _nobody(_: int) -> str | None:
    return None


@dataclass(frozen=True)
class Names:
    """How ids in a message become names; each lookup answers None for an id it does not know."""

    user: NameLookup = _nobody
    channel: NameLookup = _nobody
    role: NameLookup = _nobody


_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_MASKED_LINK = re.compile(r"\[([^\]\n]+)\]\(<?https?://[^)\s]+>?\)")
_URL = re.compile(r"<?\b(?:https?|ftp)://[^\s<>]+>?|\bwww\.[^\s<>]+", re.IGNORECASE)
_USER = re.compile(r"<@!?(\d{15,21})>")
_ROLE = re.compile(r"<@&(\d{15,21})>")
_CHANNEL = re.compile(r"<#(\d{15,21})>")
_EMOJI = re.compile(r"<a?:(\w{2,32}):\d{15,21}>")
_TIMESTAMP = re.compile(r"<t:-?\d{1,13}(?::[tTdDfFR])?>")
_SLASH_COMMAND = re.compile(r"</([\w -]{1,100}):\d{15,21}>")
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.DOTALL)
_EMPHASIS = (
    re.compile(r"\*\*\*(.+?)\*\*\*", re.DOTALL),
    re.compile(r"\*\*(.+?)\*\*", re.DOTALL),
    re.compile(r"__(.+?)__", re.DOTALL),
    re.compile(r"~~(.+?)~~", re.DOTALL),
    re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", re.DOTALL),
    re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)", re.DOTALL),
)
# Line prefixes: headings, subtext, block quotes and list bullets.
_LINE_PREFIX = re.compile(r"^[ \t]*(?:#{1,3}[ \t]+|-#[ \t]+|>>>[ \t]?|>[ \t]?|[-*+][ \t]+)", re.MULTILINE)
_ESCAPE = re.compile(r"\\([\\*_~`|>#\[\]()-])")
_PRIVATE = 0xF0000  # a private-use plane: never in chat text that matters
_HIDDEN = re.compile("[\U000f0000-\U000f007f]")
_SPACES = re.compile(r"[ \t]+")
_LINES = re.compile(r"\s*\n\s*")


def _emoji_name(name: str) -> str:
    return name.replace("_", " ").strip()


def speakable(text: str, names: Names = Names()) -> str:
    """`text` as it should be read aloud. An empty result means there is nothing to say."""
    text = _CODE_BLOCK.sub(" a code block ", text)
    text = _MASKED_LINK.sub(r"\1", text)
    text = _URL.sub(" a link ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _USER.sub(lambda m: names.user(int(m[1])) or "someone", text)
    text = _ROLE.sub(lambda m: names.role(int(m[1])) or "a role", text)
    text = _CHANNEL.sub(lambda m: names.channel(int(m[1])) or "a channel", text)
    text = _EMOJI.sub(lambda m: f" {_emoji_name(m[1])} ", text)
    text = _TIMESTAMP.sub("a time", text)
    text = _SLASH_COMMAND.sub(r"slash \1", text)
    text = text.replace("@everyone", "everyone").replace("@here", "here")
    # Escaped markdown characters are literal: hide them from the emphasis rules, restore them after.
    text = _ESCAPE.sub(lambda m: chr(_PRIVATE + ord(m[1])), text)
    text = _SPOILER.sub(r"\1", text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    text = _LINE_PREFIX.sub("", text)
    text = _HIDDEN.sub(lambda m: chr(ord(m[0]) - _PRIVATE), text)
    text = _SPACES.sub(" ", text)
    text = _LINES.sub(". ", text.strip())
    return re.sub(r"([.!?,;:])\.\s", r"\1 ", text).strip()


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut
