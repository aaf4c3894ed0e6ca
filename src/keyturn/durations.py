"""Parse and print durations like ``7d``, ``1h30m``, ``45s`` or plain seconds."""

from __future__ import annotations

import math
import re

from keyturn.errors import InvalidInputError
from keyturn.ring.policy import fmt_duration
from keyturn.ring.policy_contract import MAX_DURATION

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

__all__ = ["fmt_duration", "parse_duration"]


def parse_duration(text: str) -> float:
    """Seconds in ``text``: '90', '90s', '15m', '1h30m', '7d', '2w', '500ms'."""
    value = text.strip().lower()
    if not value:
        raise InvalidInputError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(value):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(value):
            raise InvalidInputError(
                f"invalid duration {text!r}: use e.g. 90s, 15m, 1h30m, 7d"
            ) from None
    # NaN fails every comparison, so it must be refused explicitly.
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION:
        raise InvalidInputError(f"duration {text!r} out of range")
    return seconds
