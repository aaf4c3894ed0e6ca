"""Each verdict class, driven against a keyturn-like issuer and a plain static file server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from keyturn.diagnose import EXIT_CODES, DiagnoseReport, Verdict, diagnose
from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_encode_str

from .conftest import Issuer, Server, Static, claims, jwks_response, make_key


def run(token: str, client: httpx.Client, **kw: Any) -> DiagnoseReport:
    kw.setdefault("now", time.time())
    kw.setdefault("timeout", 2.0)
    return diagnose(token, client=client, **kw)


def check(report: DiagnoseReport, verdict: Verdict, cause: str | None = None) -> None:
    assert report.verdict is verdict, (report.verdict, report.cause, report.summary)
    if cause is not None:
        assert report.cause == cause, (report.cause, report.summary)
    assert report.exit_code == EXIT_CODES[verdict]
    # Whatever happens, the report never carries the token or its signature.
    orjson.dumps(report.to_dict())


# --- (a) a keyturn-like issuer -------------------------------------------------------------
def test_ok_against_keyturn_issuer(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    token = issuer.token(now, aud="api")
    r = run(token, client, issuer=issuer.url, audience="api", now=now)
    check(r, Verdict.OK, "verified")
    assert r.verified
    assert r.token is not None and r.token.kid == issuer.current.kid
    assert r.token.claims["aud"] == "api"
    assert r.discovery is not None and r.discovery.is_keyturn
    assert r.jwks is not None and set(r.jwks.kids) == {issuer.current.kid, issuer.next.kid}
    assert r.caching is not None and r.caching.safe is True and r.caching.lifetime == 600
    assert "keyturn" in r.caching.overlap_source
    sig = token.rsplit(".", 1)[1]
    text = orjson.dumps(r.to_dict()).decode()
    assert sig not in text and token not in text


def test_revoked_key_is_named_with_the_feed(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    token = issuer.token(now)
    issuer.revoke(issuer.current, now - 30, reason="leaked in CI logs")
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "key_revoked")
    assert "leaked in CI logs" in r.summary


def test_revoked_key_still_in_a_stale_copy(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    token = issuer.token(now)
    stale = issuer.server.routes["/.well-known/jwks.json"]
    issuer.revoke(issuer.current, now - 30)
    issuer.server.routes["/.well-known/jwks.json"] = stale
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "key_revoked")
    assert "stale" in r.summary


def test_stale_cdn_confirmed_by_no_cache_refetch(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    old = jwks_response([issuer.next.jwk()], 600, Age="120", **{"X-Cache": "HIT"})
    issuer.publish()
    fresh = issuer.server.routes["/.well-known/jwks.json"]

    def cdn(req: Any) -> Any:
        # Like a CDN that answers from cache unless the client insists on revalidation.
        return fresh if "no-cache" in req.headers.get("Cache-Control", "") else old

    issuer.server.routes["/.well-known/jwks.json"] = cdn
    r = run(issuer.token(now), client, issuer=issuer.url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "stale_cache")
    assert any("no-cache" in e for e in r.evidence)
    assert r.refetch is not None and issuer.current.kid in r.refetch.kids


def test_stale_cdn_from_age_and_date(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    # A copy that left the origin an hour ago (Age 3600 > max-age 600), without the key.
    issuer.server.routes["/.well-known/jwks.json"] = jwks_response(
        [issuer.next.jwk()], 600, Age="3600"
    )
    r = run(issuer.token(now), client, issuer=issuer.url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "stale_cache")
    assert any("exceeds max-age" in e for e in r.evidence)
    assert r.caching is not None and r.caching.safe is False


def test_other_keyturn_instance_same_issuer(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    other = make_key(Alg.ES256, slot=7)
    token = other.sign(claims(issuer.url, now))
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "wrong_environment")


def test_wrong_environment_issuer(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    staging = make_key(Alg.ES256, slot=8)
    token = staging.sign(claims("https://staging.example.com", now))
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.ISSUER_MISMATCH, "wrong_environment")
    assert "staging.example.com" in r.fix


def test_issuer_string_differs(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    token = issuer.current.sign(claims("https://auth.example.com", now))
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.ISSUER_MISMATCH, "issuer_string_differs")


def test_issuer_trailing_slash(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    token = issuer.current.sign(claims(issuer.url + "/", now))
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.ISSUER_MISMATCH, "trailing_slash")


def test_signed_by_other_key_claiming_a_thumbprint_kid(
    issuer: Issuer, client: httpx.Client
) -> None:
    now = time.time()
    intruder = make_key(Alg.ES256, slot=9)
    token = intruder.sign(claims(issuer.url, now), kid=issuer.current.kid)
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.SIGNATURE_INVALID, "signed_by_other_key")


def test_wrong_algorithm(http_server: Server, client: httpx.Client) -> None:
    now = time.time()
    rsa = make_key(Alg.RS256)
    iss = Issuer(http_server, rsa, rsa, published=[rsa])
    iss.publish()
    token = rsa.sign(claims(iss.url, now), alg=Alg.PS256)
    r = run(token, client, issuer=iss.url, now=now)
    check(r, Verdict.SIGNATURE_INVALID, "wrong_algorithm")
    assert "PS256" in r.summary and "RS256" in r.summary


def test_symmetric_algorithm_refused(issuer: Issuer, client: httpx.Client) -> None:
    header = b64url_encode_str(orjson.dumps({"alg": "HS256", "kid": issuer.current.kid}))
    payload = b64url_encode_str(orjson.dumps(claims(issuer.url, time.time())))
    token = f"{header}.{payload}.{b64url_encode_str(b'x' * 32)}"
    r = run(token, client, issuer=issuer.url)
    check(r, Verdict.SIGNATURE_INVALID, "algorithm_not_accepted")


@pytest.mark.parametrize(
    ("date_offset", "cause"),
    [
        pytest.param(0, "token_expired", id="client-kept-an-old-token"),
        pytest.param(-600, "local_clock_ahead", id="our-clock-ahead-of-issuer"),
    ],
)
def test_expired(issuer: Issuer, client: httpx.Client, date_offset: int, cause: str) -> None:
    now = time.time()
    issuer.server.date_offset = date_offset
    token = issuer.token(now - 400, ttl=300)  # expired 100 s ago by our clock
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.EXPIRED, cause)
    if date_offset:
        assert any("clock offset" in e for e in r.evidence)
        assert any(f.code == "clock_offset" for f in r.findings)


def test_expired_and_key_retired_is_expired(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    old = make_key(Alg.ES256, slot=5)
    token = old.sign(claims(issuer.url, now - 7200, ttl=600))
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.EXPIRED, "token_expired")
    assert any("not published either" in e for e in r.evidence)


@pytest.mark.parametrize(
    ("date_offset", "cause"),
    [
        pytest.param(0, "issuer_clock_ahead", id="signer-clock-ahead"),
        pytest.param(900, "local_clock_behind", id="our-clock-behind"),
    ],
)
def test_not_yet_valid(issuer: Issuer, client: httpx.Client, date_offset: int, cause: str) -> None:
    now = time.time()
    issuer.server.date_offset = date_offset
    token = issuer.token(now + 600)
    r = run(token, client, issuer=issuer.url, now=now)
    check(r, Verdict.NOT_YET_VALID, cause)


def test_audience_mismatch(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    r = run(issuer.token(now, aud="billing"), client, issuer=issuer.url, audience="api", now=now)
    check(r, Verdict.AUDIENCE_MISMATCH)
    r = run(issuer.token(now), client, issuer=issuer.url, audience="api", now=now)
    check(r, Verdict.AUDIENCE_MISMATCH)


def test_missing_exp_is_claims_invalid(issuer: Issuer, client: httpx.Client) -> None:
    token = issuer.current.sign({"iss": issuer.url, "sub": "u1"})
    r = run(token, client, issuer=issuer.url)
    check(r, Verdict.CLAIMS_INVALID, "claim_missing")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="garbage"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("e30.e30.", id="empty-signature"),
    ],
)
def test_malformed(issuer: Issuer, client: httpx.Client, token: str) -> None:
    check(run(token, client, issuer=issuer.url), Verdict.TOKEN_MALFORMED)


def test_bearer_prefix_is_accepted(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    r = run("Authorization: Bearer " + issuer.token(now), client, issuer=issuer.url, now=now)
    check(r, Verdict.OK)


def test_caching_unsafe_when_a_proxy_lengthens_max_age(
    issuer: Issuer, client: httpx.Client
) -> None:
    now = time.time()
    issuer.server.routes["/.well-known/jwks.json"] = jwks_response(
        [k.jwk() for k in issuer.published], 86400
    )
    r = run(issuer.token(now), client, issuer=issuer.url, now=now)
    check(r, Verdict.CACHING_UNSAFE, "caching_unsafe")
    assert r.verified


def test_caching_judged_by_published_policy(issuer: Issuer, client: httpx.Client) -> None:
    now = time.time()
    route = issuer.server.routes["/.well-known/openid-configuration"]
    assert isinstance(route, tuple)
    doc = orjson.loads(route[2])
    doc["keyturn_policy"] = {"rotation_period": 300, "clock_skew": 60, "jwks_max_age": 600}
    issuer.server.routes["/.well-known/openid-configuration"] = (200, route[1], orjson.dumps(doc))
    r = run(issuer.token(now), client, issuer=issuer.url, now=now)
    check(r, Verdict.CACHING_UNSAFE)
    assert r.caching is not None and r.caching.overlap == 300


def test_discovery_unreachable(http_server: Server, client: httpx.Client) -> None:
    token = make_key().sign(claims(http_server.url, time.time()))
    r = run(token, client, issuer=http_server.url)
    check(r, Verdict.JWKS_UNREACHABLE, "discovery_unreachable")
    assert r.token is not None and r.token.kid  # the token is still described


@pytest.mark.parametrize(
    ("route", "verdict", "cause"),
    [
        pytest.param((500, {}, b"oops"), Verdict.JWKS_UNREACHABLE, "unreachable", id="http-500"),
        pytest.param(
            (302, {"Location": "/elsewhere"}, b""),
            Verdict.JWKS_UNREACHABLE,
            "redirect",
            id="redirect",
        ),
        pytest.param(
            (200, {"Content-Type": "text/html"}, b"<html>login</html>"),
            Verdict.JWKS_INVALID,
            "invalid_jwks",
            id="html-page",
        ),
        pytest.param(
            (200, {}, orjson.dumps({"issuer": "x"})),
            Verdict.JWKS_INVALID,
            "invalid_jwks",
            id="no-keys",
        ),
        pytest.param(
            (200, {}, b"[" + b" " * 600_000 + b"]"),
            Verdict.JWKS_UNREACHABLE,
            "unreachable",
            id="too-large",
        ),
    ],
)
def test_jwks_failures(
    issuer: Issuer, client: httpx.Client, route: Any, verdict: Verdict, cause: str
) -> None:
    issuer.server.routes["/.well-known/jwks.json"] = route
    r = run(issuer.token(time.time()), client, issuer=issuer.url)
    check(r, verdict, cause)


def test_redirect_reported_when_followed(issuer: Issuer, client: httpx.Client) -> None:
    issuer.server.routes["/jwks-moved"] = issuer.server.routes["/.well-known/jwks.json"]
    issuer.server.routes["/.well-known/jwks.json"] = (301, {"Location": "/jwks-moved"}, b"")
    r = run(issuer.token(time.time()), client, issuer=issuer.url, follow_redirects=True)
    check(r, Verdict.OK)
    assert any(f.code == "redirect" for f in r.findings)


def test_timeout(issuer: Issuer, client: httpx.Client) -> None:
    def slow(req: Any) -> Any:
        time.sleep(0.6)
        return (200, {}, b"{}")

    issuer.server.routes["/.well-known/jwks.json"] = slow
    r = run(issuer.token(time.time()), client, issuer=issuer.url, timeout=0.2)
    check(r, Verdict.JWKS_UNREACHABLE, "unreachable")
    assert r.jwks is not None and "timed out" in (r.jwks.error or "")


def test_connection_refused(client: httpx.Client, http_server: Server) -> None:
    url = http_server.url
    http_server.stop()
    token = make_key().sign(claims(url, time.time()))
    r = run(token, client, jwks_url=url + "/jwks.json")
    check(r, Verdict.JWKS_UNREACHABLE, "unreachable")


def test_no_usable_keys(issuer: Issuer, client: httpx.Client) -> None:
    issuer.server.routes["/.well-known/jwks.json"] = jwks_response([issuer.current.jwk(use="enc")])
    r = run(issuer.token(time.time()), client, issuer=issuer.url)
    check(r, Verdict.JWKS_INVALID)
    assert any(f.code == "key_skipped" for f in r.findings)


def test_needs_a_source(client: httpx.Client) -> None:
    with pytest.raises(InvalidInputError):
        diagnose("a.b.c", client=client)


# --- (b) a plain static file server, a JWKS keyturn did not produce ------------------------
def _static_jwks(static: Static, *keys: dict[str, Any]) -> str:
    return static.write("jwks.json", {"keys": list(keys)})


def test_static_valid_token_but_no_max_age(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.RS256, kid="2024-06-signing")
    url = _static_jwks(static, k.jwk())
    r = run(k.sign(claims("https://idp.example.com", now)), client, jwks_url=url, now=now)
    check(r, Verdict.CACHING_UNSAFE, "caching_unsafe")
    assert r.verified
    assert r.caching is not None and "max-age is missing" in r.caching.problems[0]
    assert r.jwks is not None and r.jwks.keys[0].kid_is_thumbprint is False


def test_static_kid_reused_for_another_key(static: Static, client: httpx.Client) -> None:
    now = time.time()
    published = make_key(Alg.RS256, kid="main", slot=1)
    signer = make_key(Alg.RS256, kid="main", slot=0)
    url = _static_jwks(static, published.jwk())
    r = run(signer.sign(claims("https://idp.example.com", now)), client, jwks_url=url, now=now)
    check(r, Verdict.SIGNATURE_INVALID, "kid_reused")


def test_static_rotation_without_overlap(static: Static, client: httpx.Client) -> None:
    now = time.time()
    new = make_key(Alg.RS256, kid="2024-07")
    old = make_key(Alg.RS256, kid="2024-06", slot=1)
    url = _static_jwks(static, old.jwk())
    r = run(new.sign(claims("https://idp.example.com", now)), client, jwks_url=url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "rotation_without_overlap")


def test_static_wrong_environment_kid_shape(static: Static, client: httpx.Client) -> None:
    now = time.time()
    published = make_key(Alg.ES256)  # kid = thumbprint
    foreign = make_key(Alg.ES256, kid="staging-key-1", slot=3)
    url = _static_jwks(static, published.jwk())
    r = run(foreign.sign(claims("https://idp.example.com", now)), client, jwks_url=url, now=now)
    check(r, Verdict.KID_NOT_PUBLISHED, "wrong_environment")


def test_static_expired(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.ES256, kid="k1")
    url = _static_jwks(static, k.jwk())
    r = run(k.sign(claims("https://idp.example.com", now - 7200)), client, jwks_url=url, now=now)
    check(r, Verdict.EXPIRED, "token_expired")


def test_static_not_yet_valid(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.ES256, kid="k1")
    url = _static_jwks(static, k.jwk())
    r = run(k.sign(claims("https://idp.example.com", now + 3600)), client, jwks_url=url, now=now)
    check(r, Verdict.NOT_YET_VALID, "issuer_clock_ahead")


def test_static_audience_mismatch(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.ES256, kid="k1")
    url = _static_jwks(static, k.jwk())
    token = k.sign(claims("https://idp.example.com", now, aud=["a", "b"]))
    check(run(token, client, jwks_url=url, audience="c", now=now), Verdict.AUDIENCE_MISMATCH)


def test_static_issuer_without_discovery(static: Static, client: httpx.Client) -> None:
    k = make_key(Alg.ES256, kid="k1")
    _static_jwks(static, k.jwk())
    token = k.sign(claims(static.server.url, time.time()))
    r = run(token, client, issuer=static.server.url)
    check(r, Verdict.JWKS_UNREACHABLE, "discovery_unreachable")
    # With --jwks as well, the missing discovery document no longer stops the diagnosis.
    r = run(token, client, issuer=static.server.url, jwks_url=static.url("jwks.json"))
    check(r, Verdict.CACHING_UNSAFE)


def test_static_not_found_and_not_json(static: Static, client: httpx.Client) -> None:
    token = make_key().sign(claims("https://idp.example.com", time.time()))
    check(run(token, client, jwks_url=static.url("missing.json")), Verdict.JWKS_UNREACHABLE)
    url = static.write("index.html", b"<!doctype html><title>Sign in</title>")
    check(run(token, client, jwks_url=url), Verdict.JWKS_INVALID, "invalid_jwks")


def test_static_private_key_published(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.ES256, kid="k1")
    url = _static_jwks(static, k.jwk(d="AAAA"))
    r = run(k.sign(claims("https://idp.example.com", now)), client, jwks_url=url, now=now)
    assert any(f.code == "private_key_published" for f in r.findings)


def test_static_overlap_given(static: Static, client: httpx.Client) -> None:
    now = time.time()
    k = make_key(Alg.ES256, kid="k1")
    static.write("jwks.json", {"keys": [k.jwk()]})
    # SimpleHTTPRequestHandler sends no Cache-Control: still unsafe whatever the overlap.
    r = run(
        k.sign(claims("https://idp.example.com", now)),
        client,
        jwks_url=static.url("jwks.json"),
        overlap=3600,
        now=now,
    )
    check(r, Verdict.CACHING_UNSAFE)
    assert r.caching is not None and r.caching.overlap_source == "given"
