"""keyturn's own cost per verified token, without the signature primitive's noise.

The verify benchmark's ratios mix keyturn's Python with the primitive, whose speed drifts by a
few percent on a shared machine; for EdDSA (a ~110 µs primitive, target 0.95) that drift is
as large as the whole budget. This script replaces the key's signature check by a no-op and
times what is left: parsing, key selection, claims; beside it, the verify benchmark's unsafe
floor (``bench.jose.minimal_verify``), so the difference is what keyturn's checks cost.
Diagnostic only (not part of ``run.py``):

    .venv/bin/python -m bench.verify_overhead
"""

from __future__ import annotations

import dataclasses
import time
import timeit
from collections.abc import Callable

import httpx
import orjson

from bench.jose import AUDIENCE, ISSUER, fixture, minimal_verify
from keyturn.keys import Alg, public_jwk
from keyturn.tokens.verify import verify_token
from keyturn.verifier import CacheOptions, Verifier

NUMBER = 200_000


def _noop(signature: bytes, data: bytes) -> None:
    return None


def _per_call(fn: Callable[[], object]) -> float:
    return min(timeit.repeat(fn, number=NUMBER, repeat=9)) / NUMBER


def main() -> None:
    fx = fixture("EdDSA", int(time.time()))  # the verify benchmark's token and key
    token = fx.token
    body = orjson.dumps({"keys": [public_jwk(fx.public, Alg.EdDSA, fx.kid)]})

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"cache-control": "max-age=600"})

    verifier = Verifier(
        algorithms=["EdDSA"],
        jwks_url="https://issuer.example/jwks",
        accept_issuers=ISSUER,
        audience=AUDIENCE,
        cache=CacheOptions(background=False),
        transport=httpx.MockTransport(handler),
    )
    with verifier:
        verifier.verify(token)  # warm
        keyset = verifier.cache.get()
        keyset.keys[fx.kid]._checks[Alg.EdDSA] = _noop
        algs = frozenset([Alg.EdDSA])
        verify = verifier.verify
        floor = minimal_verify(dataclasses.replace(fx, raw_verify=_noop))
        rows = {
            "empty call (floor of the harness)": lambda: None,
            "minimal verify (floor, unsafe)": floor,
            "verify_token": lambda: verify_token(
                token, keyset, algorithms=algs, now=time.time(), issuer=ISSUER, audience=AUDIENCE
            ),
            "Verifier.verify (warm cache)": lambda: verify(token),
        }
        print(f"EdDSA token, signature check stubbed out; min of 9 x {NUMBER:,} calls")
        for name, fn in rows.items():
            print(f"  {name:<36} {_per_call(fn) * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
