"""Over HTTP with wrk: the JWKS endpoint against nginx, and the sign API.

One server worker is pinned to core 0 and wrk (-t1 -c32) to core 1, so the server's core is
the only limit; nginx serves the same bytes from a static file on the same core.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import orjson

from bench._common import (
    BenchError,
    Mode,
    Row,
    calibrate,
    interleaved,
    rate,
    say,
    scratch_dir,
    with_ratios,
)
from bench._proc import (
    HOST,
    WrkResult,
    free_port,
    keyturn_env,
    nginx_serving,
    pin,
    report,
    serve_argv,
    started,
    wait_http,
    wrk,
)
from bench.jose import profile

JWKS_PATH = "/.well-known/jwks.json"


@contextlib.contextmanager
def keyturn_home(rotations: int = 1) -> Iterator[tuple[Path, int]]:
    """A fresh KEYTURN_HOME (SQLite) with tenant ``default`` (RS256) rotated ``rotations`` times.

    One rotation gives the 3-key RSA JWKS (previous, current, next) the targets are set on.
    """
    from keyturn.bootstrap import ensure_default_tenant, open_service
    from keyturn.config import Settings

    home = scratch_dir("keyturn-bench-home-")
    port = free_port()
    settings = Settings.from_env(keyturn_env(home, port))
    svc = open_service(settings, create=True)
    try:
        ensure_default_tenant(svc, settings, actor="bench")
        for _ in range(rotations):
            svc.rotate("default", actor="bench", reason="benchmark set-up")
    finally:
        svc.store.dispose()
    yield home, port


def _rows(bench: str, case: str, results: dict[str, list[WrkResult]], baseline: str) -> list[Row]:
    base = [r.rps for r in results[baseline]]
    rows = []
    for label, runs in results.items():
        vals = [r.rps for r in runs]
        row = Row(bench, case, label, "req/s", vals, baseline=baseline)
        row.ratios = [v / b for v, b in zip(vals, base, strict=False)]
        row.extra = {
            "p50": f"{median(r.p50_ms for r in runs):.2f} ms",
            "p99": f"{median(r.p99_ms for r in runs):.2f} ms",
        }
        bad = sum(r.non_2xx_3xx + r.socket_errors for r in runs)
        if bad:
            row.extra["errors"] = bad
        rows.append(row)
    return rows


# keyturn serve as shipped (no access log), and with uvicorn's per-request access log on:
# the difference is what per-request logging costs.
JWKS_SERVERS: list[tuple[str, list[str]]] = [
    ("keyturn (default flags)", []),
    ("keyturn --access-log", ["--access-log"]),
]


def run_jwks_http(mode: Mode) -> list[Row]:
    with keyturn_home() as (home, _port), contextlib.ExitStack() as stack:
        servers: list[tuple[str, str, Any]] = []
        for label, extra in JWKS_SERVERS:
            port = free_port()
            argv = [*serve_argv(port, cpus="0"), *extra]
            proc = stack.enter_context(started("keyturn", argv, env=keyturn_env(home, port)))
            servers.append((label, f"http://{HOST}:{port}{JWKS_PATH}", proc))
        bodies = [wait_http(proc, url) for _label, url, proc in servers]
        first = bodies[0]
        body = first.content
        if any(b.content != body for b in bodies):
            raise BenchError("the keyturn servers serve different JWKS bytes")
        nkeys = len(orjson.loads(body)["keys"])
        etag = first.headers.get("etag")
        say(
            f"  keyturn JWKS: {len(body)} bytes, {nkeys} keys, "
            f"content-type {first.headers.get('content-type')}, etag {etag}"
        )
        if nkeys != 3:
            say(f"  warning: expected 3 RSA keys, got {nkeys}")
        _ng, nurl = stack.enter_context(nginx_serving(body, cpus="0"))
        n = httpx.get(nurl)
        if n.content != body:
            raise BenchError("nginx does not serve the same bytes as keyturn")
        configs: list[tuple[str, str, list[str]]] = [("nginx static file", nurl, [])]
        # The framework floor: what uvicorn itself allows a callable that does nothing.
        body_file = scratch_dir("keyturn-bench-bare-") / "jwks.json"
        body_file.write_bytes(body)
        bare_port = free_port()
        bare = stack.enter_context(
            started(
                "bare-asgi",
                [
                    *pin("0"),
                    sys.executable,
                    "-m",
                    "bench.bare_asgi",
                    str(body_file),
                    str(bare_port),
                ],
                cwd=Path(__file__).resolve().parent.parent,
            )
        )
        bare_url = f"http://{HOST}:{bare_port}{JWKS_PATH}"
        wait_http(bare, bare_url)
        configs.append(("bare ASGI callable, same uvicorn", bare_url, []))
        ng304 = _check_304(nurl, n.headers.get("etag"), "nginx")
        if ng304:
            configs.append(("nginx 304", nurl, [ng304]))
        for label, url, _proc in servers:
            configs.append((f"{label} 200", url, []))
            kt304 = _check_304(url, etag, "keyturn")
            if kt304:
                configs.append((f"{label} 304", url, [kt304]))
        results = _rounds(configs, mode)
        for label, _url, proc in servers:
            say(f"  {label}: server RSS after the runs {proc.rss_kib() / 1024:.0f} MiB")
    rows = _rows("jwks-http", f"{nkeys}-key RSA JWKS, {len(body)} B", results, "nginx static file")
    by_impl = {r.impl: r for r in rows}
    for label, _url, _proc in servers:
        r200, r304 = by_impl.get(f"{label} 200"), by_impl.get(f"{label} 304")
        if r200 is not None and r304 is not None:
            r304.extra["304/200"] = f"{r304.median / r200.median:.2f}"
    return rows


def _check_304(url: str, etag: str | None, who: str) -> str | None:
    """The If-None-Match header to send, if the server answers it with 304."""
    if not etag:
        say(f"  note: {who} sends no ETag: its 304 path is not measured")
        return None
    r = httpx.get(url, headers={"If-None-Match": etag})
    if r.status_code != 304:
        say(f"  note: {who} answers If-None-Match with {r.status_code}, not 304: not measured")
        return None
    return f"If-None-Match: {etag}"


def _rounds(
    configs: list[tuple[str, str, list[str]]],
    mode: Mode,
    *,
    script: Path | None = None,
    before: Callable[[], None] | None = None,
) -> dict[str, list[WrkResult]]:
    results: dict[str, list[WrkResult]] = {c[0]: [] for c in configs}
    for rnd in range(mode.repeats):
        shift = rnd % len(configs)
        for label, url, headers in configs[shift:] + configs[:shift]:
            if before is not None:
                before()
            results[label].append(
                wrk(url, seconds=mode.http_seconds, headers=headers, script=script)
            )
    for label, runs in results.items():
        report(label, runs)
    return results


SIGN_LUA = """\
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


def run_sign_http(mode: Mode) -> list[Row]:
    """Tokens/s of POST /api/v1/tenants/default/tokens/sign, one worker and two.

    Baseline: raw cryptography RS256 signing in this process, measured before each wrk run,
    which is what one core can do at best.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from keyturn.bootstrap import open_service
    from keyturn.config import Settings

    try:
        from keyturn.store.apikeys import ApiKeyStore
    except ImportError as exc:
        raise BenchError(f"no API keys in this keyturn yet ({exc})") from None

    raw_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pad, h = padding.PKCS1v15(), hashes.SHA256()
    claims = {"sub": "user-8d2f1c9a", "aud": "https://api.example.com/orders", "scope": "read"}
    rows: list[Row] = []
    with keyturn_home(rotations=0) as (home, port):
        settings = Settings.from_env(keyturn_env(home, port))
        svc = open_service(settings)
        try:
            _rec, api_token = ApiKeyStore(svc.store).create(
                "signer", tenant="default", actor="bench", description="benchmark"
            )
            token, _ = svc.sign("default", claims)
            msg = token.rpartition(".")[0].encode()

            def raw_sign() -> object:
                return raw_key.sign(msg, pad, h)

            def svc_sign() -> object:
                return svc.sign("default", claims)

            def trusted_sign() -> object:
                # What signing costs once the prepared key is trusted instead of re-reading
                # key_version from the store: revalidate_after=inf never re-checks after the
                # first read (the service's own knob).
                saved = svc.revalidate_after
                svc.revalidate_after = math.inf
                try:
                    return svc.sign("default", claims)
                finally:
                    svc.revalidate_after = saved

            inproc = interleaved(
                [
                    ("raw cryptography RS256 sign, 1 core", raw_sign),
                    ("KeyService.sign in-process (SQLite)", svc_sign),
                    ("KeyService.sign in-process, revalidate_after=inf", trusted_sign),
                ],
                mode,
            )
            n_raw = calibrate(raw_sign, mode)
            raw_vals: list[float] = []
            if mode.profile:
                profile("KeyService.sign (key_version read per call)", svc_sign, raw_sign, mode)
                profile("KeyService.sign (revalidate_after=inf)", trusted_sign, raw_sign, mode)
        finally:
            svc.store.dispose()
        script = scratch_dir("keyturn-bench-wrk-") / "sign.lua"
        body = orjson.dumps({"claims": claims}).decode()
        script.write_text(SIGN_LUA.format(body=body, token=api_token))
        path = "/api/v1/tenants/default/tokens/sign"
        results: dict[str, list[WrkResult]] = {}
        for workers in (1, 2):
            cpus = "0" if workers == 1 else None
            argv = serve_argv(port, workers=workers, cpus=cpus)
            with started(f"keyturn-{workers}w", argv, env=keyturn_env(home, port)) as kt:
                wait_http(kt, f"http://{HOST}:{port}{JWKS_PATH}")
                url = f"http://{HOST}:{port}{path}"
                r = httpx.post(
                    url,
                    content=body,
                    headers={
                        "Authorization": f"Bearer {api_token}",
                        "Content-Type": "application/json",
                    },
                )
                if r.status_code != 200 or "token" not in r.json():
                    raise BenchError(f"sign API answered {r.status_code}: {r.text[:300]}")
                label = f"sign API, {workers} worker{'s' if workers > 1 else ''}"
                if workers == 2:
                    label += " (unpinned)"
                res = _rounds(
                    [(label, url, [])],
                    mode,
                    script=script,
                    before=lambda: raw_vals.append(rate(raw_sign, n_raw)),
                )
                results.update(res)
    in_rows = [Row("sign-http", "RS256", name, "ops/s", vals) for name, vals in inproc.items()]
    with_ratios(in_rows, in_rows[0])
    rows += in_rows
    base = in_rows[0]
    # HTTP rows: ratio to the raw signing rate measured just before each wrk run.
    raw_by_run = iter(raw_vals)
    for label, runs in results.items():
        vals = [r.rps for r in runs]
        row = Row("sign-http", "RS256", label, "tokens/s", vals, baseline=base.impl)
        row.ratios = [v / next(raw_by_run) for v in vals]
        row.extra = {
            "p50": f"{median(r.p50_ms for r in runs):.2f} ms",
            "p99": f"{median(r.p99_ms for r in runs):.2f} ms",
        }
        bad = sum(r.non_2xx_3xx + r.socket_errors for r in runs)
        if bad:
            row.extra["errors"] = bad
        rows.append(row)
    say(
        "  in-process: " + "; ".join(f"{r.impl} {r.median:,.0f}/s ({r.ratio:.2f})" for r in in_rows)
    )
    return rows
