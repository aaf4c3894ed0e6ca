"""Servers for the sign-api benchmark, under the same uvicorn settings as ``keyturn serve``.

``python -m bench.sign_server floor PORT``: the floor of a Python signing service on this
machine. A bare ASGI callable that parses the same body (orjson), checks the bearer secret
with a constant-time compare of its SHA-256 against an in-memory table, signs with the same
keys (read once from ``KEYTURN_HOME`` at start: the tenants' current keys) and returns the
same JSON (``token`` and the full claims, ``iss iat nbf exp jti`` added). No validation
beyond that, no problems, no metrics, no request id, no database after start.

``python -m bench.sign_server keyturn-hop PORT``: keyturn's own app (``build_app``, as
``keyturn serve`` builds it) with only ES256 and EdDSA signed on the event loop and the other
algorithms in the thread pool: the measurement of whether the hop pays for RS256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import time
from typing import Any

import orjson
import uvicorn

UVICORN = {
    "host": "127.0.0.1",
    "access_log": False,
    "log_level": "warning",
    "server_header": False,
    "loop": "auto",
    "http": "auto",
}
PREFIX = "/api/v1/tenants/"


def floor_app() -> Any:
    from keyturn.bootstrap import open_service
    from keyturn.config import Settings

    settings = Settings.from_env()
    svc = open_service(settings)
    try:
        signers = {}
        for t in svc.tenants():
            p = svc.prepared(t.name)
            if p.signer is not None:
                signers[t.name] = (p.signer, p.tenant.issuer, int(p.tenant.policy.token_ttl))
        table: dict[str, bytes] = {}
        keys = svc.api_keys()
        for k in keys.list():
            found = keys.lookup(k.key_id)
            if found is not None:
                table[k.key_id] = found[1].encode()
    finally:
        svc.close()
    unauthorized = {
        "type": "http.response.start",
        "status": 401,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
    }
    dummy = b"0" * 64

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body", False):
            message = await receive()
            body += message.get("body", b"")
        auth = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
                break
        _, _, token = auth.decode("latin-1").partition(" ")
        parts = token.split("_", 2)
        ok = False
        if len(parts) == 3:
            digest = hashlib.sha256(parts[2].encode()).hexdigest().encode()
            ok = hmac.compare_digest(digest, table.get(parts[1], dummy))
        tenant = scope["path"][len(PREFIX) :].partition("/")[0]
        entry = signers.get(tenant)
        if not ok or entry is None:
            await send(unauthorized)
            await send({"type": "http.response.body", "body": b"{}"})
            return
        signer, issuer, ttl = entry
        data = orjson.loads(body)
        claims = dict(data.get("claims") or {})
        now = int(time.time())
        claims["iss"] = issuer
        claims["iat"] = now
        claims["nbf"] = now
        claims["exp"] = now + int(data.get("ttl") or ttl)
        claims.setdefault("jti", secrets.token_urlsafe(16))
        payload = orjson.dumps({"token": signer.sign(claims), "claims": claims})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def keyturn_hop_app() -> Any:
    from keyturn.config import Settings
    from keyturn.keys.algorithms import Alg
    from keyturn.server import signfast
    from keyturn.server.documents import DEFAULT_MAX_TENANTS
    from keyturn.server.feed import DEFAULT_MAX_LIFETIME
    from keyturn.server.serve import ServeOptions, build_app
    from keyturn.server.watch import DEFAULT_POLL_INTERVAL

    signfast.INLINE_ALGS = frozenset({Alg.ES256, Alg.EdDSA})
    options = ServeOptions(
        scheduler_interval=None,  # as `keyturn serve --no-scheduler`
        poll_interval=DEFAULT_POLL_INTERVAL,
        max_tenants=DEFAULT_MAX_TENANTS,
        stream_max_lifetime=DEFAULT_MAX_LIFETIME,
    )
    return build_app(Settings.from_env(), options)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "floor":
        uvicorn.run(floor_app(), port=port, lifespan="off", **UVICORN)  # type: ignore[arg-type]
    elif kind == "keyturn-hop":
        uvicorn.run(keyturn_hop_app(), port=port, lifespan="on", **UVICORN)  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown server {kind!r}")


if __name__ == "__main__":
    main()
