"""Playwright on Debian's Chromium for the console's browser tests; skips (or fails in CI).

Chromium comes from Debian (``apt-get install chromium``, done by scripts/install-test-deps),
Playwright from PyPI (the dev extra); no browser download. Without either the tests skip with
a hint, except under ``CI=true``, where a missing browser is a failure (``tests/tools.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ..tools import skip_or_fail

CHROMIUM = os.environ.get("KEYTURN_TEST_CHROMIUM", "/usr/bin/chromium")
HINT = (
    "browser tests need Debian's Chromium at {path} and Playwright: run scripts/install-test-deps "
    "(apt-get install chromium) and scripts/setup (the dev extra has playwright)"
)
# Where screenshots go: a temporary folder, or KEYTURN_SCREENSHOTS (scripts/screenshots sets
# it to docs/screenshots so the committed pictures are the ones the tests took).
SCREENSHOTS_ENV = "KEYTURN_SCREENSHOTS"


def unavailable(reason: str) -> NoReturn:
    skip_or_fail(HINT.format(path=CHROMIUM) + f" ({reason})")


def launch() -> Iterator[Any]:
    """One Chromium for the whole module, closed at the end."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"playwright not importable: {exc}")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        unavailable("no chromium binary")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        path = Path(target)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


UNLABELLED_JS = """() => Array.from(
  document.querySelectorAll('input:not([type=hidden]), select, textarea')
).filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
  && !el.getAttribute('aria-labelledby')).map(el => el.name || el.id || el.outerHTML)"""

FOCUSED_MATCHES_JS = "(s) => !!document.activeElement && document.activeElement.matches(s)"
