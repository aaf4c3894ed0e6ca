"""The sign API over HTTP against the floor of a Python signing service (issue #19).

Servers, each one uvicorn worker pinned to core 0 (wrk -t1 -c32 pinned to core 1), all up at
once on one KEYTURN_HOME, loaded one at a time, the order rotating every round:

- ``floor``: ``bench.sign_server floor``, a bare ASGI callable that parses the same body,
  checks the bearer secret (constant-time compare against an in-memory table), signs with the
  same key and returns the same JSON;
- ``keyturn serve`` as shipped (``POST .../tokens/sign`` and ``.../tokens/sign-batch``);
- for RS256, keyturn's app with RS256 signed in the thread pool (``bench.sign_server
  keyturn-hop``; as shipped it is signed on the loop): does the hop pay?

Per algorithm (RS256, ES256, EdDSA; one tenant each, a ``signer`` key each), the ratio of
keyturn's tokens/s to the floor's in the same round; the batch row counts tokens (requests x
N, N = 10) against the floor's single-token requests.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from statistics import median

import httpx
import orjson

from bench._common import BenchError, Mode, Row, say, scratch_dir
from bench._proc import (
    HOST,
    WrkResult,
    free_port,
    keyturn_env,
    pin,
    report,
    serve_argv,
    started,
    wait_http,
    wrk,
)
from bench.web import JWKS_PATH, SIGN_LUA, keyturn_home

TENANTS = {"RS256": "default", "ES256": "es256", "EdDSA": "eddsa"}
BATCH_N = 10
CLAIMS = {"sub": "user-8d2f1c9a", "aud": "https://api.example.com/orders", "scope": "read"}
ROOT = Path(__file__).resolve().parent.parent


def _setup(home: Path, port: int, algs: list[str]) -> dict[str, str]:
    """Tenants for ``algs`` and a signer key for each; returns alg -> API token."""
    from keyturn.bootstrap import open_service
    from keyturn.config import Settings
    from keyturn.keys.algorithms import Alg
    from keyturn.ring.model import Policy

    settings = Settings.from_env(keyturn_env(home, port))
    svc = open_service(settings)
    tokens: dict[str, str] = {}
    try:
        keys = svc.api_keys()
        for alg in algs:
            name = TENANTS[alg]
            if name != "default":
                svc.create_tenant(
                    name,
                    issuer=settings.issuer_for(name),
                    policy=Policy(alg=Alg(alg)),
                    actor="bench",
                )
            tokens[alg] = keys.create("signer", tenant=name, actor="bench")[1]
    finally:
        svc.close()
    return tokens


def _script(tag: str, body: dict[str, object], token: str) -> Path:
    path = scratch_dir("keyturn-bench-wrk-") / f"{tag}.lua"
    path.write_text(SIGN_LUA.format(body=orjson.dumps(body).decode(), token=token))
    return path


def _check(url: str, body: dict[str, object], token: str, label: str) -> None:
    r = httpx.post(
        url,
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    if r.status_code != 200 or ("token" not in r.json() and "items" not in r.json()):
        raise BenchError(f"{label} answered {r.status_code}: {r.text[:300]}")


def run_sign_api(mode: Mode) -> list[Row]:
    algs = [a for a in TENANTS if not mode.algs or a in mode.algs]
    if not algs:
        raise BenchError(f"sign-api measures {', '.join(TENANTS)} only")
    rows: list[Row] = []
    with keyturn_home(rotations=0) as (home, port), contextlib.ExitStack() as stack:
        tokens = _setup(home, port, algs)
        env = keyturn_env(home, port)
        kt = stack.enter_context(started("keyturn", serve_argv(port, cpus="0"), env=env))
        wait_http(kt, f"http://{HOST}:{port}{JWKS_PATH}")
        bases = {"keyturn": f"http://{HOST}:{port}"}
        for kind in ("floor", "keyturn-hop"):
            p = free_port()
            argv = [*pin("0"), str(Path(_python())), "-m", "bench.sign_server", kind, str(p)]
            proc = stack.enter_context(started(kind, argv, env=keyturn_env(home, p), cwd=ROOT))
            url = f"http://{HOST}:{p}"
            if kind == "keyturn-hop":
                wait_http(proc, url + JWKS_PATH)
            else:
                _wait_port(proc, url)
            bases[kind] = url
        single = {"claims": CLAIMS}
        batch = {"items": [{"claims": {**CLAIMS, "n": i}} for i in range(BATCH_N)]}
        for alg in algs:
            tenant, token = TENANTS[alg], tokens[alg]
            sign_path = f"/api/v1/tenants/{tenant}/tokens/sign"
            s_single = _script(f"{alg}-single", single, token)
            s_batch = _script(f"{alg}-batch", batch, token)
            configs: list[tuple[str, str, Path, int]] = [
                ("floor (bare ASGI, same uvicorn)", bases["floor"] + sign_path, s_single, 1),
                ("keyturn sign API", bases["keyturn"] + sign_path, s_single, 1),
                (
                    f"keyturn sign-batch, N={BATCH_N}",
                    bases["keyturn"] + sign_path + "-batch",
                    s_batch,
                    BATCH_N,
                ),
            ]
            if alg not in ("ES256", "EdDSA"):
                configs.append(
                    (
                        f"keyturn sign API, {alg} in the thread pool",
                        bases["keyturn-hop"] + sign_path,
                        s_single,
                        1,
                    )
                )
            for label, url, _script_path, n in configs:
                _check(url, batch if n > 1 else single, token, label)
            say(f"  {alg} (tenant {tenant}):")
            results: dict[str, list[WrkResult]] = {c[0]: [] for c in configs}
            for rnd in range(mode.repeats):
                shift = rnd % len(configs)
                for label, url, script, _n in configs[shift:] + configs[:shift]:
                    results[label].append(wrk(url, seconds=mode.http_seconds, script=script))
            for label, runs in results.items():
                report(label, runs)
            floor = [r.rps for r in results[configs[0][0]]]
            for label, _url, _s, n in configs:
                runs = results[label]
                vals = [r.rps * n for r in runs]
                row = Row(
                    "sign-api", f"{alg} sign", label, "tokens/s", vals, baseline=configs[0][0]
                )
                row.ratios = [v / f for v, f in zip(vals, floor, strict=False)]
                row.extra = {
                    "p50": f"{median(r.p50_ms for r in runs):.2f} ms",
                    "p99": f"{median(r.p99_ms for r in runs):.2f} ms",
                }
                bad = sum(r.non_2xx_3xx + r.socket_errors for r in runs)
                if bad:
                    row.extra["errors"] = bad
                rows.append(row)
        say(f"  keyturn server RSS after the runs {kt.rss_kib() / 1024:.0f} MiB")
    return rows


def _python() -> str:
    import sys

    return sys.executable


def _wait_port(proc: object, url: str, timeout: float = 30.0) -> None:
    """The floor answers only its sign path: wait until any HTTP answer comes back."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(url + "/api/v1/tenants/x/tokens/sign", content=b"{}", timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise BenchError(f"the floor server did not answer at {url} in {timeout:.0f}s")
