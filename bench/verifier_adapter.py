"""Build keyturn.verifier's warm-cache verify path for the verify benchmark.

The JWKS is served by an ``httpx.MockTransport``: no network, and after the first call every
verification is a cache hit, which is the figure the verify target is about.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any

import orjson

from bench._common import say

JWKS_URL = "https://keyturn.example.com/t/acme/.well-known/jwks.json"
_noted = False


def _note(msg: str) -> None:
    global _noted
    if not _noted:
        say(f"  note: {msg}")
        _noted = True


def build(fx: Any, issuer: str, audience: str) -> tuple[str, Callable[[], object]] | None:
    """A zero-argument callable verifying ``fx.token`` through the library, cache warm."""
    import httpx

    try:
        from keyturn.verifier import CacheOptions, Verifier
    except ImportError as exc:
        _note(f"keyturn.verifier not usable here ({exc}); its row is left out")
        return None
    from keyturn.keys import Alg, public_jwk

    body = orjson.dumps({"keys": [public_jwk(fx.public, Alg(fx.alg), fx.kid)]})

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=body,
            headers={
                "content-type": "application/jwk-set+json",
                "cache-control": "public, max-age=600",
            },
        )

    verifier = Verifier(
        algorithms=[fx.alg],
        jwks_url=JWKS_URL,
        accept_issuers=issuer,
        audience=audience,
        # No background refresh thread: the cache stays warm for the whole run anyway.
        cache=CacheOptions(background=False),
        transport=httpx.MockTransport(handler),
    )
    atexit.register(verifier.close)
    token = fx.token
    verify = verifier.verify
    verify(token)  # warm the cache (the one fetch)
    return ("keyturn.verifier (warm cache)", lambda: verify(token))
