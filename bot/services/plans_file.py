"""The operator's plans file (QUOTA_PLANS_FILE): custom global plans in TOML, validated at start.

```toml
[plans.friends]
base = "premium"            # optional: free (default), premium or unlimited
max_input_chars = 8000      # optional
llm = { minute = 60, day = 10000 }
imagine = { day = "-" }     # "-": no limit in that window
```
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.services.quotas import BUILTIN_PLANS, Feature, Plan, Window

PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
CAP_MAX = 10_000_000
INPUT_CHARS_MAX = 100_000


class PlansFileError(ValueError):
    """The plans file is unreadable or wrong; the message names the key."""


def _cap(key: str, value: Any) -> int | None:
    if value == "-":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= CAP_MAX:
        raise PlansFileError(f'{key} must be a whole number from 0 to {CAP_MAX}, or "-" for no limit')
    return value


def parse_plan(name: str, table: Any) -> Plan:
    where = f"plans.{name}"
    if not PLAN_NAME.match(name):
        raise PlansFileError(f"{where}: a plan name is 1-32 lower-case letters, digits, - or _")
    if name in BUILTIN_PLANS:
        raise PlansFileError(f"{where}: {name} is a built-in plan and can't be redefined")
    if not isinstance(table, Mapping):
        raise PlansFileError(f"{where} must be a table")
    base_name = table.get("base", "free")
    if base_name not in BUILTIN_PLANS:
        raise PlansFileError(f"{where}.base must be one of {', '.join(BUILTIN_PLANS)}")
    base = BUILTIN_PLANS[base_name]
    limits: dict[Feature, dict[Window, int | None]] = {
        feature: dict(base.caps(feature)) for feature in Feature
    }
    max_chars = base.max_input_chars
    for key, value in table.items():
        if key == "base":
            continue
        if key == "max_input_chars":
            if value == "-":
                max_chars = None
            elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INPUT_CHARS_MAX:
                raise PlansFileError(f'{where}.max_input_chars must be from 1 to {INPUT_CHARS_MAX}, or "-"')
            else:
                max_chars = value
            continue
        if key not in Feature.__members__.values():
            raise PlansFileError(
                f"{where}.{key} is not a feature; features are {', '.join(f.value for f in Feature)}"
            )
        if not isinstance(value, Mapping):
            raise PlansFileError(f"{where}.{key} must be a table like {{ minute = 10, day = 100 }}")
        for window_name, cap in value.items():
            if window_name not in Window.__members__.values():
                raise PlansFileError(
                    f"{where}.{key}.{window_name} is not a window; windows are minute, hour, day"
                )
            limits[Feature(key)][Window(window_name)] = _cap(f"{where}.{key}.{window_name}", cap)
    return Plan(name=name, limits=limits, max_input_chars=max_chars)


def load_plans_file(path: Path | None) -> dict[str, Plan]:
    """Custom plans by name; none without a file. Raises PlansFileError naming the key at fault."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlansFileError(f"can't be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlansFileError(f"is not valid TOML ({exc})") from None
    unknown = set(data) - {"plans"}
    if unknown:
        raise PlansFileError(f"{sorted(unknown)[0]} is not a known key; plans go under [plans.<name>]")
    plans = data.get("plans", {})
    if not isinstance(plans, Mapping):
        raise PlansFileError("plans must be a table of [plans.<name>] tables")
    return {name: parse_plan(name, table) for name, table in plans.items()}
