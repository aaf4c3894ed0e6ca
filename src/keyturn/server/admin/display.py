"""How values read on the pages: durations, UTC times, relative times (Jinja filters)."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from keyturn.ring.policy import fmt_duration


def human(seconds: float) -> str:
    """A duration for people, at most two units: '29d 23h', '5m 12s', '45s'."""
    if not math.isfinite(seconds):
        return "-"
    s = round(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def when(t: float | None, seconds: bool = False) -> str:
    """A UTC time: '2026-12-01 21:40' (or with seconds)."""
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.gmtime(t))


def relative(t: float, now: float) -> str:
    d = t - now
    if abs(d) < 1:
        return "now"
    return f"in {human(d)}" if d > 0 else f"{human(d)} ago"


def short(kid: str) -> str:
    """A kid shortened for tables (the full kid stays in a title and on the key's page)."""
    return kid if len(kid) <= 12 else kid[:10] + "…"


def planned(kid: str) -> bool:
    """Keys the plan invents ("(new key 1)") have no page of their own."""
    return kid.startswith("(new key")


def detail_text(key: str, value: Any) -> str:
    """One audit detail in full: times as UTC, other values as JSON (never cut off)."""
    if key.endswith(("_at", "_after")) and isinstance(value, int | float):
        return when(value, seconds=True) + " UTC"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


FILTERS = {
    "duration": fmt_duration,
    "human": human,
    "when": when,
    "short": short,
    "pretty_json": pretty_json,
}
GLOBALS = {"relative": relative, "planned": planned, "detail_text": detail_text}
