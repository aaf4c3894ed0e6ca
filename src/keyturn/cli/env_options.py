"""``keyturn serve`` options from ``KEYTURN_<OPTION>`` environment variables (for containers).

A container is configured by its environment, not its command line: every ``serve`` option
``--some-option`` also reads ``KEYTURN_SOME_OPTION`` as its default, so an image whose
entrypoint is ``keyturn serve`` needs no arguments. An option given on the command line wins.
Flags (``--no-scheduler``, ``--access-log``) take ``1/true/yes/on`` or ``0/false/no/off``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import NoReturn

PREFIX = "KEYTURN_"
# Options that make no sense from the environment (or belong to every command).
_SKIP = frozenset({"help", "json"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
MAX_VALUE = 4096  # an environment value is a setting, not a document


def env_name(dest: str) -> str:
    return PREFIX + dest.upper()


def option_env_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{KEYTURN_NAME: --option}`` for every option of ``parser`` read from the environment."""
    return {
        env_name(a.dest): a.option_strings[-1]
        for a in parser._actions
        if a.option_strings and a.dest not in _SKIP
    }


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _fail(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw[:40]!r}")


def _fail(msg: str) -> NoReturn:
    # Raised while the parser is built, before any command runs: the same exit as a bad option.
    sys.stderr.write(f"keyturn: error [config_error]: {msg}\n")
    raise SystemExit(2)


def apply_env_defaults(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Set each option's default from ``KEYTURN_<DEST>`` when that variable is set (non-empty)."""
    defaults: dict[str, object] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in _SKIP:
            continue
        name = env_name(action.dest)
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        if len(raw) > MAX_VALUE:
            _fail(f"{name} is longer than {MAX_VALUE} characters")
        if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            flag = _flag(name, raw)
            # store_false flags would invert; serve has none, but keep the meaning explicit.
            defaults[action.dest] = flag if action.const is not False else not flag
            continue
        if action.choices is not None and raw not in action.choices:
            _fail(f"{name} must be one of {', '.join(map(str, action.choices))}, got {raw[:40]!r}")
        # argparse converts a string default with the option's type (int, ...) at parse time,
        # and reports a bad value as it would a bad argument.
        defaults[action.dest] = raw
    if defaults:
        parser.set_defaults(**defaults)
