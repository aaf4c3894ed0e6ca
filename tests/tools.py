"""Optional tools and services the tests need: skip locally with a hint, FAIL in CI.

``CI=true`` (set by ``.ci/run``, the project's CI entry point) turns every "not installed" skip
into a failure, so a CI machine that lost a tool cannot go green by skipping the tests that
use it. Use ``require_tool`` for binaries (promtool, schemathesis, chromium, softhsm2-util,
buildah, ...) and ``skip_or_fail`` for anything else that may be missing (a database server).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the CI variable says so (``true``, ``1`` or ``yes``, any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test locally; in CI, fail it: a missing dependency there is a broken CI."""
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def find_tool(
    name: str, *, also: Iterable[str] = (), paths: Iterable[str | Path] = ()
) -> str | None:
    """The first of: ``paths`` that exist, ``name`` beside this Python (the venv), then ``name``
    and ``also`` on PATH."""
    for p in paths:
        if Path(p).is_file() and os.access(p, os.X_OK):
            return str(p)
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    for candidate in (name, *also):
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def require_tool(
    name: str, hint: str, *, also: Iterable[str] = (), paths: Iterable[str | Path] = ()
) -> str:
    """The path of the tool ``name``; otherwise skip with ``hint`` (how to install it), or fail
    under CI=true."""
    found = find_tool(name, also=also, paths=paths)
    if found is None:
        skip_or_fail(f"{name} not found: {hint}")
    return found
