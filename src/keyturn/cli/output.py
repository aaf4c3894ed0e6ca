"""What every command shares: the output (tables or ``--json``), timestamps, the audit actor, and
reading an argument that may be a value, ``@file`` or ``-`` for stdin."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from keyturn import errors as E

MAX_STDIN_BYTES = 1024 * 1024


class Out:
    """Prints tables for people or JSON for scripts; warnings always go to stderr."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode

    def data(self, obj: Any, text: Callable[[], str] | str | None = None) -> None:
        if self.json:
            sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif text is not None:
            sys.stdout.write((text() if callable(text) else text).rstrip("\n") + "\n")

    @staticmethod
    def warn(msg: str) -> None:
        sys.stderr.write(f"warning: {msg}\n")


def ts(t: float | None) -> str:
    """A UTC timestamp for tables; ``-`` for none."""
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


SHORT_KID = 8


def short_kid(kid: str | None) -> str:
    """A kid for people: its first 8 characters and an ellipsis (``--json`` keeps it whole).
    8 base64url characters are 48 bits: distinct within any tenant's handful of keys."""
    if kid is None:
        return "-"
    return kid if len(kid) <= SHORT_KID + 1 else kid[:SHORT_KID] + "…"


def text_value(value: Any) -> str:
    """A value in a key: value listing: ``-`` for none, ``yes``/``no``, else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns under a header and a dashed rule; ``None`` cells print ``-``."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def indented_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns indented by two spaces, without a rule (a table inside a report)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def read_arg(value: str, *, limit: int = MAX_STDIN_BYTES, what: str = "input") -> bytes:
    """``-`` reads stdin, ``@path`` reads a file, anything else is the value itself.

    At most ``limit`` bytes are read from any source; more is an invalid-input error naming
    ``what`` (``input``, ``token input``).
    """
    if value == "-":
        data = sys.stdin.buffer.read(limit + 1)
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise E.InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > limit:
            raise E.InvalidInputError(f"{path} is larger than {limit} bytes")
    else:
        data = value.encode()
    if len(data) > limit:
        raise E.InvalidInputError(f"{what} larger than {limit} bytes")
    return data


def actor(args: argparse.Namespace) -> str:
    """``--actor``, else ``cli:$USER``: who is acting, for the audit log."""
    if getattr(args, "actor", None):
        return str(args.actor)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def print_outcome(out: Out, res: Any, text: str) -> None:
    """A service outcome: its warnings and forced violations to stderr, then the result."""
    for w in res.warnings:
        out.warn(w)
    for v in res.violations:
        out.warn(f"forced past a timing rule: {v}")
    out.data(res.to_dict(), text)
