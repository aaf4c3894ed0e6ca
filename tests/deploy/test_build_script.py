"""scripts/build-image finds the Debian mirror apt already uses (no root or tools needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-image"

DEB822 = """Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment line
URIs: http://mirror.example.net/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def mirror(apt: Path, suite: str = "bookworm") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--print-mirror"],
        env={"PATH": "/usr/bin:/bin", "KEYTURN_APT_ETC": str(apt), "KEYTURN_DEBIAN_SUITE": suite},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def apt(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_deb822_sources_pick_the_stanza_that_carries_the_suite(apt: Path) -> None:
    (apt / "sources.list.d" / "debian.sources").write_text(DEB822)
    res = mirror(apt)
    assert (res.returncode, res.stdout) == (0, "http://mirror.example.net/debian\n")


def test_one_line_sources_with_options(apt: Path) -> None:
    (apt / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://other.example/debian trixie main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian bookworm main\n"
    )
    assert mirror(apt).stdout == "http://mirror.example.org/debian\n"
    assert mirror(apt, "trixie").stdout == "http://other.example/debian\n"


def test_no_mirror_for_the_suite_says_what_to_set(apt: Path) -> None:
    (apt / "sources.list").write_text("deb http://other.example/debian trixie main\n")
    res = mirror(apt)
    assert res.returncode == 1
    assert "set KEYTURN_DEBIAN_MIRROR" in res.stderr
