"""Which model a provider uses when a request names none, and which model ids are closed-source."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

# Today's closed-source prefixes; each also matches after a vendor or fine-tune prefix
# (`azure-gpt-4o`, `ft:gpt-4o-mini:org::x`, `anthropic.claude-3-opus`, `openai/gpt-4o`).
CLOSED_SOURCE_PREFIXES = (
    "gpt-",
    "o1",
    "o3",
    "o4",
    "chatgpt",
    "claude",
    "gemini",
    "command-r",
    "grok",
    "dall-e",
    "reka",
    "palm",
)
DEFAULT_CLOSED_SOURCE_PATTERNS: tuple[str, ...] = tuple(
    pattern for prefix in CLOSED_SOURCE_PREFIXES for pattern in (f"{prefix}*", f"*[-_.:/]{prefix}*")
)


def is_closed_source(model: str, patterns: Iterable[str] = DEFAULT_CLOSED_SOURCE_PATTERNS) -> bool:
    """True when `model` (case-insensitive) matches one of the glob `patterns`."""
    name = model.strip().lower()
    return bool(name) and any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)
