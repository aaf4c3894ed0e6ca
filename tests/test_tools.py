"""tests/tools.py: a missing tool skips locally and fails under CI=true."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.tools import in_ci, require_tool, skip_or_fail

MISSING = "keyturn-no-such-tool-3f9a"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("", False), ("false", False)],
)
def test_in_ci_reads_the_ci_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_missing_tool_skips_locally_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install it"):
        require_tool(MISSING, "apt-get install it")


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true: {MISSING} not found: hint"):
        require_tool(MISSING, "hint")
    with pytest.raises(pytest.fail.Exception, match="CI=true: no database"):
        skip_or_fail("no database")


def test_found_tool_is_returned_in_ci_and_out(monkeypatch: pytest.MonkeyPatch) -> None:
    python = Path(sys.executable).name
    for ci in ("true", ""):
        monkeypatch.setenv("CI", ci)
        assert require_tool(MISSING, "hint", also=[python]).endswith(python)
        assert require_tool(MISSING, "hint", paths=[sys.executable]) == sys.executable
