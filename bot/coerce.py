"""Loose input (environment text, decoded JSON) turned into typed values, or a short reason why not."""

from __future__ import annotations

import math
from typing import Any, TypeVar

N = TypeVar("N", int, float)

_TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})


class Invalid(ValueError):
    """Why a value was refused, worded to follow the name of what was wrong: "must be a whole number"."""


def blank_to_none(value: Any) -> Any:
    """An empty or all-space string means "not set"."""
    return None if isinstance(value, str) and not value.strip() else value


def whole_number(value: Any) -> int:
    """An int from an int (True counts as 1), an integral float, or text such as " 42 " or "3.0"."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        digits = value.strip()
        head, dot, tail = digits.partition(".")
        if dot and not tail.strip("0"):
            digits = head
        try:
            return int(digits)
        except ValueError:
            pass
    raise Invalid("must be a whole number")


def number(value: Any) -> float:
    """A finite float from an int, a float or text such as "0.5" or "1e1"."""
    result: float | None = None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            result = None
    if result is None or not math.isfinite(result):
        raise Invalid("must be a number")
    return result


def boolean(value: Any) -> bool:
    """True or False from a bool, 0 or 1, or a word such as yes/no, on/off, true/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise Invalid("must be true or false (yes/no, on/off, 1/0)")


def bounded(value: N, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> N:
    """`value` if it lies within the given bounds."""
    if ge is not None and value < ge:
        raise Invalid(f"must be at least {ge}")
    if gt is not None and value <= gt:
        raise Invalid(f"must be more than {gt}")
    if le is not None and value > le:
        raise Invalid(f"must be at most {le}")
    return value


def text(value: Any, *, min_length: int = 0, max_length: int | None = None) -> str:
    """A string whose length lies within the given bounds."""
    if not isinstance(value, str):
        raise Invalid("must be text")
    if len(value) < min_length:
        raise Invalid("must not be empty" if min_length == 1 else f"needs at least {min_length} characters")
    if max_length is not None and len(value) > max_length:
        raise Invalid(f"is {len(value)} characters; at most {max_length} allowed")
    return value


def sized_list(value: Any, *, min_items: int = 0, max_items: int | None = None) -> list[Any]:
    """A list (or tuple, as a list) holding between `min_items` and `max_items` items."""
    if not isinstance(value, list | tuple):
        raise Invalid("must be a list")
    if max_items is not None and len(value) > max_items:
        raise Invalid(f"has {len(value)} items; at most {max_items} allowed")
    if len(value) < min_items:
        raise Invalid(f"needs at least {min_items} item(s)")
    return list(value)


def one_of(value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is exactly one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise Invalid(f"must be one of {', '.join(choices)}")
    return value
