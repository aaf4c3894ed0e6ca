"""Shared pieces: machine description, timing, statistics and the result table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


class BenchError(RuntimeError):
    """A benchmark cannot run (missing tool, failed install, server that does not start)."""


@dataclass(frozen=True)
class Mode:
    """How hard to try: ``quick`` only proves the suite runs; full mode gives usable figures."""

    quick: bool
    repeats: int
    seconds: float  # target duration of one in-process measurement
    iterations: int | None  # fixed iteration count (overrides ``seconds``)
    http_seconds: float
    tenants: int
    profile: bool
    algs: tuple[str, ...] = ()  # sign/verify: only these algorithms (empty: all)


@dataclass
class Row:
    """One measured figure: median and spread over repeats, and its ratio to the baseline."""

    bench: str
    case: str  # e.g. "RS256 sign"
    impl: str
    unit: str  # "ops/s", "req/s", "keys/s"
    values: list[float]
    baseline: str | None = None
    ratios: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median, as a fraction."""
        m = self.median
        return (max(self.values) - min(self.values)) / m if m else 0.0

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def ratio_spread(self) -> tuple[float, float] | None:
        return (min(self.ratios), max(self.ratios)) if self.ratios else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(median=self.median, spread=self.spread, ratio=self.ratio)
        return d


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, load, versions."""
    import cryptography

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": _openssl_version(),
    }
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        info["commit"] = rev or "unknown"
    except OSError:
        info["commit"] = "unknown"
    return info


def _openssl_version() -> str:
    from cryptography.hazmat.backends.openssl.backend import backend

    return str(backend.openssl_version_text())


def rate(fn: Callable[[], object], n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls."""
    perf = time.perf_counter
    rng = range(n)
    t0 = perf()
    for _ in rng:
        fn()
    return n / (perf() - t0)


def calibrate(fn: Callable[[], object], mode: Mode) -> int:
    """Iterations that take about ``mode.seconds`` (or the fixed count), after a warm-up."""
    if mode.iterations is not None:
        for _ in range(min(20, mode.iterations)):
            fn()
        return mode.iterations
    n, elapsed = 10, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= 0.05 or n >= 1_000_000:
            break
        n *= 4
    return max(50, int(n * mode.seconds / elapsed))


# Length of one slice of an interleaved round: short enough that every implementation sees the
# same background noise (on a shared VM it moves on a scale of a second or more).
SLICE_SECONDS = 0.05


def interleaved(
    impls: Sequence[tuple[str, Callable[[], object]]], mode: Mode
) -> dict[str, list[float]]:
    """Measure each impl ``mode.repeats`` times, interleaved in short slices.

    A round gives each implementation about ``mode.seconds``, cut into slices of
    ``SLICE_SECONDS`` that alternate between implementations (order rotating every slice).
    Baseline and candidate thus run within a fraction of a second of each other, so the
    ratio taken round by round cancels background load that drifts over seconds; measuring
    each implementation for a whole second in turn let that drift into the ratios (seen here
    on a shared VM: per-round ratios of the same code spread by +-15%).
    """
    counts = {name: calibrate(fn, mode) for name, fn in impls}
    slices = 1 if mode.iterations is not None else max(1, round(mode.seconds / SLICE_SECONDS))
    out: dict[str, list[float]] = {name: [] for name, _ in impls}
    order = list(impls)
    perf = time.perf_counter
    for r in range(mode.repeats):
        spent = dict.fromkeys(counts, 0.0)
        done = dict.fromkeys(counts, 0)
        for s in range(slices):
            k = (r * slices + s) % len(order)
            for name, fn in order[k:] + order[:k]:
                n = max(1, counts[name] // slices)
                rng = range(n)
                t0 = perf()
                for _ in rng:
                    fn()
                spent[name] += perf() - t0
                done[name] += n
        for name in counts:
            out[name].append(done[name] / spent[name])
    return out


def with_ratios(rows: list[Row], baseline: Row) -> list[Row]:
    """Fill each row's per-round ratio to ``baseline`` (same round, same position)."""
    for row in rows:
        row.baseline = baseline.impl
        row.ratios = [v / b for v, b in zip(row.values, baseline.values, strict=False)]
    return rows


def fmt_num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def markdown(rows: list[Row]) -> str:
    """A table ready to paste into docs/benchmarks.md."""
    head = (
        "| benchmark | case | implementation | median | spread | ratio to baseline "
        "(min-max) | baseline | notes |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        rs = r.ratio_spread
        ratio = f"{r.ratio:.3f} ({rs[0]:.3f}-{rs[1]:.3f})" if r.ratio is not None and rs else "-"
        notes = ", ".join(f"{k} {v}" for k, v in r.extra.items())
        lines.append(
            f"| {r.bench} | {r.case} | {r.impl} | {fmt_num(r.median)} {r.unit} | "
            f"±{r.spread * 50:.0f}% | {ratio} | {r.baseline or '-'} | {notes} |"
        )
    return "\n".join(lines)


def say(msg: str) -> None:
    print(msg, flush=True)


_scratch_root: Path | None = None


def scratch_dir(prefix: str) -> Path:
    """A fresh directory under this run's scratch root, which is removed when the run ends."""
    global _scratch_root
    import atexit
    import shutil
    import tempfile

    if _scratch_root is None:
        _scratch_root = Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
        # nginx's worker runs unprivileged: it must be able to traverse to its document root.
        _scratch_root.chmod(0o755)
        atexit.register(shutil.rmtree, _scratch_root, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_root))
