"""Refresh grants per second per core: the token endpoint against the sign API and raw signing.

A refresh is a sign plus one write transaction (retire the presented token, insert its
successor, advance the session) and a form parse and client check, so its natural bound is the
sign API's rate. Both HTTP figures come from the same load generator (asyncio + httpx, pinned
to the other core) against one ``keyturn serve`` worker pinned to core 0, measured in
alternation within each round; raw RS256 signing is measured in this process before each
round. Refresh tokens are single-use, so wrk's fixed request body cannot drive them: each of
``CHAINS`` concurrent chains refreshes its own session, sequentially, with the token the
previous answer returned.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from bench._common import BenchError, Mode, Row, calibrate, interleaved, rate, say, with_ratios
from bench._proc import HOST, keyturn_env, serve_argv, started, wait_http
from bench.web import JWKS_PATH, keyturn_home

CHAINS = 16
CLAIMS = {"sub": "user-8d2f1c9a", "aud": "https://api.example.com/orders", "scope": "read"}


def _pin_self(cpu: int) -> Callable[[], None]:
    """Move this process to ``cpu`` (the load generator off the server's core); undo fn."""
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return lambda: None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return lambda: os.sched_setaffinity(0, before)


async def _drive(
    seconds: float, chains: int, step: Callable[[httpx.AsyncClient, int], Any]
) -> tuple[int, int]:
    """Run ``chains`` sequential loops of ``step`` for ``seconds``: (successes, failures)."""
    ok = bad = 0
    limits = httpx.Limits(max_connections=chains, max_keepalive_connections=chains)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        deadline = time.perf_counter() + seconds

        async def loop(i: int) -> None:
            nonlocal ok, bad
            while time.perf_counter() < deadline:
                if await step(http, i):
                    ok += 1
                else:
                    bad += 1

        await asyncio.gather(*(loop(i) for i in range(chains)))
    return ok, bad


def run_refresh_http(mode: Mode) -> list[Row]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from keyturn.bootstrap import open_service
    from keyturn.config import Settings

    try:
        from keyturn.sessions.model import AuthMethod
        from keyturn.sessions.service import ClientCredentials, SessionService
        from keyturn.store.apikeys import ApiKeyStore
    except ImportError as exc:
        raise BenchError(f"no sessions in this keyturn yet ({exc})") from None

    raw_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pad, h = padding.PKCS1v15(), hashes.SHA256()
    rows: list[Row] = []
    with keyturn_home(rotations=0) as (home, port):
        settings = Settings.from_env(keyturn_env(home, port))
        svc = open_service(settings)
        sessions = SessionService(svc)
        try:
            _rec, api_token = ApiKeyStore(svc.store).create(
                "signer", tenant="default", actor="bench", description="benchmark"
            )
            client, secret = sessions.create_client(
                "default", actor="bench", auth_method="none", grant_types=["refresh_token"]
            )
            assert secret is None
            cid = client.client_id
            authed = sessions.authenticate("default", ClientCredentials(cid, None, AuthMethod.NONE))
            token, _ = svc.sign("default", CLAIMS)
            msg = token.rpartition(".")[0].encode()
            _, first = sessions.open_session(
                "default", client_id=cid, subject="bench-inproc", actor="bench"
            )
            chain = [first.refresh_token or ""]

            def raw_sign() -> object:
                return raw_key.sign(msg, pad, h)

            def svc_sign() -> object:
                return svc.sign("default", CLAIMS)

            def svc_refresh() -> object:
                res = sessions.refresh("default", authed, chain[0])
                chain[0] = res.refresh_token or ""
                return res

            inproc = interleaved(
                [
                    ("raw cryptography RS256 sign, 1 core", raw_sign),
                    ("KeyService.sign in-process (SQLite)", svc_sign),
                    ("SessionService.refresh in-process (SQLite)", svc_refresh),
                ],
                mode,
            )
            n_raw = calibrate(raw_sign, mode)
            opened = [
                sessions.open_session(
                    "default", client_id=cid, subject=f"bench-{i}", actor="bench"
                )[1].refresh_token
                or ""
                for i in range(CHAINS)
            ]
        finally:
            svc.store.dispose()

        base = f"http://{HOST}:{port}"
        sign_body = orjson.dumps({"claims": CLAIMS})
        sign_headers = {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"}
        tokens = list(opened)

        async def sign_step(http: httpx.AsyncClient, i: int) -> bool:
            r = await http.post(
                f"{base}/api/v1/tenants/default/tokens/sign",
                content=sign_body,
                headers=sign_headers,
            )
            return r.status_code == 200

        async def refresh_step(http: httpx.AsyncClient, i: int) -> bool:
            r = await http.post(
                f"{base}/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens[i], "client_id": cid},
            )
            if r.status_code != 200:
                return False
            tokens[i] = r.json()["refresh_token"]
            return True

        raw_vals: list[float] = []
        results: dict[str, list[float]] = {"sign API": [], "refresh grant": []}
        errors = dict.fromkeys(results, 0)
        steps = {"sign API": sign_step, "refresh grant": refresh_step}
        with started(
            "keyturn-1w", serve_argv(port, workers=1, cpus="0"), env=keyturn_env(home, port)
        ) as kt:
            wait_http(kt, f"{base}{JWKS_PATH}")
            for rnd in range(mode.repeats):
                raw_vals.append(rate(raw_sign, n_raw))
                order = list(steps) if rnd % 2 == 0 else list(reversed(steps))
                undo = _pin_self(1)
                try:
                    for name in order:
                        ok, bad = asyncio.run(_drive(mode.http_seconds, CHAINS, steps[name]))
                        results[name].append(ok / mode.http_seconds)
                        errors[name] += bad
                finally:
                    undo()
    in_rows = [Row("refresh-http", "RS256", n, "ops/s", v) for n, v in inproc.items()]
    with_ratios(in_rows, in_rows[0])
    rows += in_rows
    for name, vals in results.items():
        label = f"{name}, 1 worker pinned (HTTP, {CHAINS} chains)"
        row = Row("refresh-http", "RS256", label, "per s", vals, baseline=in_rows[0].impl)
        row.ratios = [v / r for v, r in zip(vals, raw_vals, strict=False)]
        if errors[name]:
            row.extra["errors"] = errors[name]
        rows.append(row)
    refresh, sign = results["refresh grant"], results["sign API"]
    rows[-1].extra["vs sign API"] = (
        f"{sorted(r / s for r, s in zip(refresh, sign, strict=False))[len(refresh) // 2]:.2f}"
    )
    say(
        "  in-process: "
        + "; ".join(f"{r.impl} {r.median:,.0f}/s ({r.ratio:.2f})" for r in in_rows)
        + f"\n  HTTP: sign API {sorted(sign)[len(sign) // 2]:,.0f}/s, refresh "
        f"{sorted(refresh)[len(refresh) // 2]:,.0f}/s, refresh/sign {rows[-1].extra['vs sign API']}"
    )
    return rows
