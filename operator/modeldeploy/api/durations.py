"""Go/Prometheus duration strings ("30s", "1m30s", "500ms"), as the CRD's pattern accepts them."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError naming the text when it is not a duration."""
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    return total
