"""The in-process benchmarks (sign, verify) still run: a smoke test, never a speed check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sign_and_verify_benchmarks_run_and_print_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "sign",
            "verify",
            "--quick",
            "--iterations",
            "200",
            "--repeats",
            "1",
            "--no-install",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cpu: " in res.stdout
    assert "| benchmark | case | implementation |" in res.stdout
    rows = json.loads(out.read_text())["rows"]
    for bench in ("sign", "verify"):
        impls = {r["impl"] for r in rows if r["bench"] == bench}
        assert {"raw cryptography", "PyJWT", "joserfc"} <= impls
        assert any(i.startswith("keyturn") for i in impls)
    # Every figure has a ratio to its same-run baseline; its value is not judged here.
    assert all(r["ratio"] is not None and r["ratio"] > 0 for r in rows)
