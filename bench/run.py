"""keyturn's benchmark suite: one entry point for every performance figure of the project.

    scripts/bench                      # everything, full mode (quiet machine: ~30 min)
    scripts/bench sign verify          # a named subset
    scripts/bench verify --algs EdDSA  # one algorithm of the in-process benchmarks
    scripts/bench --quick              # CI: proves the suite runs; ratios reported, not asserted
    scripts/bench --json out.json      # also write every figure as JSON

Each benchmark prints the machine's CPU model, the baseline measured in the same run, the ratio
to it per round (median and min-max over repeats) and, at the end, a markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = ("sign", "verify", "jwks-http", "sign-http", "sign-api", "refresh-http", "sweep")


def _runner(name: str) -> Callable[..., list]:  # type: ignore[type-arg]
    # Imported lazily: `sign` alone must not need wrk, nginx or PostgreSQL.
    if name == "sign":
        from bench.jose import run_sign

        return run_sign
    if name == "verify":
        from bench.jose import run_verify

        return run_verify
    if name == "jwks-http":
        from bench.web import run_jwks_http

        return run_jwks_http
    if name == "sign-http":
        from bench.web import run_sign_http

        return run_sign_http
    if name == "sign-api":
        from bench.sign_api import run_sign_api

        return run_sign_api
    if name == "refresh-http":
        from bench.sessions import run_refresh_http

        return run_refresh_http
    from bench.sweep import run_sweep

    return run_sweep


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Run keyturn's benchmarks (all, or the named ones).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="small counts: only prove it runs")
    p.add_argument("--repeats", type=int, help="rounds per figure (default 5, quick 3)")
    p.add_argument("--seconds", type=float, help="target seconds per in-process measurement")
    p.add_argument("--iterations", type=int, help="fixed iterations per in-process measurement")
    p.add_argument("--http-seconds", type=float, help="seconds per wrk run (default 10, quick 2)")
    p.add_argument("--tenants", type=int, help="sweep: tenants (default 100000, quick 2000)")
    p.add_argument("--profile", action="store_true", help="cProfile keyturn's sign/verify/sweep")
    p.add_argument(
        "--algs",
        type=lambda v: tuple(a for a in v.split(",") if a),
        default=(),
        metavar="A,B",
        help="sign/verify: only these algorithms, e.g. EdDSA,ES256 (default: all)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write all figures as JSON")
    p.add_argument("--no-install", action="store_true", help="fail instead of installing tools")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    from bench.jose import ALGS

    bad = [a for a in args.algs if a not in ALGS]
    if bad:
        p.error(f"unknown algorithm {', '.join(bad)}; choose from {', '.join(ALGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    # Run as a script, bench/ itself is sys.path[0]: its modules would shadow top-level ones.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if str(here.parent) not in sys.path:
        sys.path.insert(0, str(here.parent))
    from bench import deps
    from bench._common import BenchError, Mode, Row, machine, markdown, say

    args = parse_args(argv)
    names = args.names or list(BENCHMARKS)
    mode = Mode(
        quick=args.quick,
        repeats=args.repeats or (3 if args.quick else 5),
        seconds=args.seconds or (0.1 if args.quick else 1.0),
        iterations=args.iterations,
        http_seconds=args.http_seconds or (2.0 if args.quick else 10.0),
        tenants=args.tenants or (2000 if args.quick else 100_000),
        profile=args.profile,
        algs=args.algs,
    )
    try:
        deps.ensure(names, install=not args.no_install)
    except BenchError as exc:
        say(f"bench: cannot run: {exc}")
        return 2

    info = machine()
    say(f"# keyturn benchmarks{' (quick mode: proves the suite runs)' if mode.quick else ''}")
    say(f"command: {' '.join(['scripts/bench', *(argv if argv is not None else sys.argv[1:])])}")
    for k, v in info.items():
        say(f"{k}: {v}")
    rows: list[Row] = []
    failed: list[str] = []
    started = time.time()
    for name in names:
        say(f"\n## {name}")
        t0 = time.time()
        try:
            rows += _runner(name)(mode)
        except BenchError as exc:
            say(f"  {name}: cannot run: {exc}")
            failed.append(name)
        say(f"  ({time.time() - t0:.0f} s)")
    info["loadavg_end"] = machine()["loadavg"]
    say(f"\n## Results ({time.time() - started:.0f} s)\n")
    say(
        f"Machine: {info['cpu']}, {info['cores']} cores; load average {info['loadavg']} at "
        f"start, {info['loadavg_end']} at end; {info['date']}; commit {info['commit']}; "
        f"Python {info['python']}, cryptography {info['cryptography']} ({info['openssl']}).\n"
    )
    say(markdown(rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "mode": vars(mode), "rows": [r.to_dict() for r in rows]},
                indent=2,
            )
        )
        say(f"\nwrote {args.json}")
    if failed:
        say(f"\nnot run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
