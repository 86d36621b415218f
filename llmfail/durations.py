"""Durations as people write them in YAML and on the command line.

One parser serves the config, `bench --for`, `events --since` and `simulate`,
so `90s` means the same thing everywhere.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds for `250ms`, `30s`, `10m`, `2h`, `1d`, `1h30m` or a bare number of seconds.

    Raises ValueError with a message fit for a user; negative values are refused
    because every duration in llmfail is a length of time.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative: {value!r}")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"expected a duration like 250ms, 30s, 10m, 2h or 1d, got {value!r}") from None
    else:
        raise ValueError(f"expected a duration like 30s, got {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    if seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be finite: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact form for people: `4m12s`, `850ms`, `2h`, `3d4h`, `30d` (a zero second unit is left out)."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    for big, small, units in ((days, hours, "dh"), (hours, minutes, "hm"), (minutes, secs, "ms")):
        if big:
            return f"{big}{units[0]}" + (f"{small}{units[1]}" if small else "")
    return f"{secs}s"
