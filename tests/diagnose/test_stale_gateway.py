"""Issue #14: a gateway serving an old JWKS without an Age header, while the issuer's own
jwks_uri has the kid, is a stale cache layer, not another environment."""

from __future__ import annotations

import time

import httpx

from keyturn.diagnose import EXIT_CODES, Verdict, diagnose

from .conftest import Issuer, jwks_response


def test_gateway_serving_an_old_jwks_without_age_is_a_stale_cache(
    issuer: Issuer, client: httpx.Client
) -> None:
    now = time.time()
    # The gateway kept the JWKS from before the current key was published: no Age, no X-Cache,
    # and it ignores Cache-Control: no-cache.
    issuer.server.routes["/gw/jwks.json"] = jwks_response([issuer.next.jwk()], 600)
    gateway = f"{issuer.url}/gw/jwks.json"
    r = diagnose(
        issuer.token(now), client=client, issuer=issuer.url, jwks_url=gateway, now=now, timeout=2
    )
    assert (r.verdict, r.cause) == (Verdict.KID_NOT_PUBLISHED, "stale_cache"), r.summary
    assert r.exit_code == EXIT_CODES[Verdict.KID_NOT_PUBLISHED]
    assert r.summary.startswith(f"{gateway} serves an old copy of the JWKS without kid")
    assert "a cache layer in between (gateway, proxy, CDN)" in r.summary
    assert (
        f"the issuer's jwks_uri {issuer.jwks_url} (asked with no-cache) publishes kid "
        f"{issuer.current.kid}"
    ) in r.evidence
    assert f"{gateway} sent no Age header: the cache does not say it is one" in r.evidence


def test_gateway_and_issuer_both_without_the_kid_is_still_another_environment(
    issuer: Issuer, client: httpx.Client
) -> None:
    from keyturn.keys.algorithms import Alg

    from .conftest import claims, make_key

    now = time.time()
    issuer.server.routes["/gw/jwks.json"] = issuer.server.routes["/.well-known/jwks.json"]
    token = make_key(Alg.ES256, slot=7).sign(claims(issuer.url, now))
    r = diagnose(
        token,
        client=client,
        issuer=issuer.url,
        jwks_url=f"{issuer.url}/gw/jwks.json",
        now=now,
        timeout=2,
    )
    assert (r.verdict, r.cause) == (Verdict.KID_NOT_PUBLISHED, "wrong_environment")
