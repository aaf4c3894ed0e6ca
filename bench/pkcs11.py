"""PKCS#11 (SoftHSM2) signing against software signing, in the same run, same claims.

    .venv/bin/python -m bench.pkcs11                 # RS256 PS256 ES256 EdDSA, 5 rounds of 2 s
    .venv/bin/python -m bench.pkcs11 --algs ES256 --rounds 3 --seconds 1

Both paths sign through ``TokenSigner`` (the service's hot path): software with the private key
in memory, PKCS#11 through one logged-in session to a token initialised here in a temporary
directory. Within each round the two paths run in alternating 50 ms slices (as the rest of
the suite does) so load drift hits both; the ratio is token / software per round, reported as
median and min-max. Needs softhsm2 (scripts/install-test-deps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench._common import machine

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
CLAIMS = {"iss": "https://issuer.example", "sub": "bench", "aud": "api", "iat": 1, "exp": 2}


SLICE = 0.05  # seconds per slice; slices alternate so background drift hits both paths


def _round(a: Callable[[], object], b: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Ops/s of ``a`` and ``b`` over one round of alternating 50 ms slices (order rotating)."""
    counts, spent = [0, 0], [0.0, 0.0]
    fns = (a, b)
    flip = 0
    while min(spent) < seconds:
        for i in (flip, 1 - flip):
            fn, n = fns[i], 0
            start = time.perf_counter()
            deadline = start + SLICE
            while True:
                fn()
                n += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            counts[i] += n
            spent[i] += now - start
        flip = 1 - flip
    return counts[0] / spent[0], counts[1] / spent[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algs", nargs="+", default=["RS256", "PS256", "ES256", "EdDSA"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        ap.error("--rounds must be >= 1 and --seconds > 0")
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if Path(m).exists()), None)
    if util is None or module is None:
        print("softhsm2 not installed: run scripts/install-test-deps", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="keyturn-bench-p11-"))
    try:
        (tmp / "tokens").mkdir()
        conf = tmp / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                "bench",
                "--pin",
                "1234",
                "--so-pin",
                "5678",
            ],
            check=True,
            capture_output=True,
        )
        return _run(module, args.algs, args.rounds, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(module: str, algs: list[str], rounds: int, seconds: float) -> int:
    from keyturn.keys.algorithms import Alg
    from keyturn.keys.backends.pkcs11 import Pkcs11Backend, Pkcs11Config
    from keyturn.keys.backends.pkcs11_uri import parse_pkcs11_uri
    from keyturn.keys.generate import generate_private_key
    from keyturn.tokens.signer import TokenSigner

    info = machine()
    print(f"# {info['cpu']} ({info['cores']} cores), load {info['loadavg']}, {info['date']}")
    print(f"# python {info['python']}, cryptography {info['cryptography']}, module {module}")
    backend = Pkcs11Backend(
        parse_pkcs11_uri("pkcs11:token=bench"),
        Pkcs11Config((module,), {"KEYTURN_PKCS11_PIN": "1234"}),
    )
    rows = []
    for name in algs:
        alg = Alg(name)
        new = backend.generate("bench", alg, 2048)
        token = TokenSigner(backend.signer("bench", new.kid, alg, new.ref), alg, new.kid)
        soft = TokenSigner(generate_private_key(alg, 2048), alg, new.kid)
        soft_rates, token_rates = [], []
        for _ in range(rounds):
            s_rate, t_rate = _round(
                partial(soft.sign, CLAIMS), partial(token.sign, CLAIMS), seconds
            )
            soft_rates.append(s_rate)
            token_rates.append(t_rate)
        ratios = [t / s for t, s in zip(token_rates, soft_rates, strict=True)]
        row = (
            name,
            statistics.median(soft_rates),
            statistics.median(token_rates),
            statistics.median(ratios),
            min(ratios),
            max(ratios),
        )
        rows.append(row)
        print(
            f"{name:6} software {row[1]:9.0f}/s  pkcs11 {row[2]:9.0f}/s  "
            f"ratio {row[3]:.2f} ({row[4]:.2f}-{row[5]:.2f})",
            flush=True,
        )
        backend.destroy("bench", new.kid, new.ref)
    backend.close()
    print()
    print("| alg | software signs/s | PKCS#11 (SoftHSM2) signs/s | token / software (min-max) |")
    print("|---|---:|---:|---|")
    for name, s, t, r, lo, hi in rows:
        print(f"| {name} | {s:,.0f} | {t:,.0f} | {r:.2f} ({lo:.2f}-{hi:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
