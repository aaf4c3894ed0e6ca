"""Each diagnose rule on literal Evidence: no HTTP, no server, just values in and verdicts out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from keyturn.diagnose._http import Fetch
from keyturn.diagnose.evidence import Evidence, describe_token, read_discovery
from keyturn.diagnose.jwks import JwksReport, analyse_jwks
from keyturn.diagnose.report import DiscoveryReport, Verdict
from keyturn.diagnose.rules import (
    Decision,
    assess_caching,
    claims_invalid,
    decide,
    findings,
    foreign_kid_kind,
    issuer_differs,
    key_problem,
    kid_missing_here,
    needs_origin_check,
    source_failed,
    stale_cache_confirmed,
    stale_cache_signs,
    token_malformed,
    unknown_to_keyturn,
    verified,
)
from keyturn.errors import TokenError
from keyturn.keys.algorithms import Alg
from keyturn.tokens.jws import parse_compact

from .conftest import Key, claims, make_key

NOW = 1_800_000_000.0
ISS = "https://id.example"
JWKS = "https://id.example/.well-known/jwks.json"
DATE_NOW = "Fri, 15 Jan 2027 08:00:00 GMT"  # NOW as an HTTP date


def jwks_report(
    *keys: Key, url: str = JWKS, status: int = 200, error: str | None = None, **headers: str
) -> JwksReport:
    body = orjson.dumps({"keys": [k.jwk() for k in keys]}) if status == 200 else None
    return analyse_jwks(Fetch(url, status, dict(headers), body, error), NOW)


def evidence(token: str, jwks: JwksReport | None, **kw: Any) -> Evidence:
    try:
        parsed, error = parse_compact(token, allowed_algs=frozenset(Alg)), None
    except TokenError as exc:
        parsed, error = None, exc
    return Evidence(NOW, describe_token(token, NOW), parsed, error, jwks=jwks, **kw)


def keyturn_discovery(**policy: float) -> DiscoveryReport:
    doc = {
        "issuer": ISS,
        "jwks_uri": JWKS,
        "keyturn_revocations_uri": ISS + "/revocations.json",
        "keyturn_policy": policy or None,
    }
    url = ISS + "/.well-known/openid-configuration"
    return read_discovery(Fetch(url, 200, {}, orjson.dumps(doc)))


@pytest.fixture
def key() -> Key:
    return make_key(Alg.ES256)


@pytest.fixture
def live(key: Key) -> str:
    return key.sign(claims(ISS, NOW - 60, aud="api"))


def test_malformed_token_decides_first() -> None:
    ev = evidence("not-a-token", None)
    d = token_malformed(ev)
    assert d is not None and d.verdict is Verdict.TOKEN_MALFORMED
    assert decide(ev) == d


def test_a_good_token_is_left_alone_by_every_failure_rule(key: Key, live: str) -> None:
    ev = evidence(live, jwks_report(key, **{"cache-control": "public, max-age=300"}), issuer=ISS)
    for rule in (token_malformed, source_failed, issuer_differs, key_problem, claims_invalid):
        assert rule(ev) is None, rule.__name__
    assert not needs_origin_check(ev)


def test_ok_with_known_overlap(key: Key, live: str) -> None:
    ev = evidence(
        live,
        jwks_report(key, **{"cache-control": "public, max-age=300"}),
        issuer=ISS,
        discovery=keyturn_discovery(rotation_period=86400, jwks_max_age=300, clock_skew=60),
    )
    d = decide(ev)
    assert (d.verdict, d.cause) == (Verdict.OK, "verified")
    c = assess_caching(ev)
    assert c is not None and c.safe is True and c.overlap == 86400


def test_unreachable_jwks(live: str) -> None:
    ev = evidence(live, jwks_report(status=503, error="HTTP 503"), jwks_url=JWKS)
    d = source_failed(ev)
    assert d is not None and (d.verdict, d.cause) == (Verdict.JWKS_UNREACHABLE, "unreachable")


def test_redirect_is_its_own_cause(live: str) -> None:
    fetch = Fetch(JWKS, 302, {}, error="HTTP 302 redirect", redirects=((302, JWKS + "?v=2"),))
    ev = evidence(live, analyse_jwks(fetch, NOW), jwks_url=JWKS)
    d = source_failed(ev)
    assert d is not None and d.cause == "redirect"


def test_discovery_without_jwks_uri_is_invalid(live: str) -> None:
    disc = read_discovery(Fetch(ISS + "/d", 200, {}, b'{"issuer": "https://id.example"}'))
    ev = evidence(live, None, issuer=ISS, discovery=disc)
    d = source_failed(ev)
    assert d is not None and (d.verdict, d.cause) == (Verdict.JWKS_INVALID, "discovery_invalid")


@pytest.mark.parametrize(
    ("iss", "cause"),
    [
        pytest.param(ISS + "/", "trailing_slash", id="slash"),
        pytest.param("https://staging.example", "issuer_string_differs", id="published"),
    ],
)
def test_issuer_rules(key: Key, iss: str, cause: str) -> None:
    token = key.sign(claims(iss, NOW - 60))
    d = issuer_differs(evidence(token, jwks_report(key), issuer=ISS))
    assert d is not None and (d.verdict, d.cause) == (Verdict.ISSUER_MISMATCH, cause)


def test_issuer_from_another_environment(key: Key) -> None:
    other = make_key(Alg.ES256, slot=1)
    token = other.sign(claims("https://staging.example", NOW - 60))
    d = issuer_differs(evidence(token, jwks_report(key), issuer=ISS))
    assert d is not None and d.cause == "wrong_environment"


def test_expired_token_with_retired_key_is_expired_not_missing(key: Key) -> None:
    other = make_key(Alg.ES256, slot=1)
    token = other.sign(claims(ISS, NOW - 7200, ttl=3600))
    ev = evidence(token, jwks_report(key), issuer=ISS)
    d = kid_missing_here(ev)
    assert d is not None and (d.verdict, d.cause) == (Verdict.EXPIRED, "token_expired")
    assert not needs_origin_check(ev)


def test_local_clock_ahead_by_the_server_date(key: Key) -> None:
    token = key.sign(claims(ISS, NOW - 3600 - 120, ttl=3600))  # expired 2 minutes ago here
    # The JWKS server's Date says it is 10 minutes earlier: by its clock, still valid.
    ev = evidence(token, jwks_report(key, date="Fri, 15 Jan 2027 07:50:00 GMT"), issuer=ISS)
    d = claims_invalid(ev)
    assert d is not None and (d.verdict, d.cause) == (Verdict.EXPIRED, "local_clock_ahead")


def test_missing_kid_needs_the_origin_then_confirms_a_stale_cache(key: Key) -> None:
    new = make_key(Alg.ES256, slot=1)
    token = new.sign(claims(ISS, NOW - 60))
    ev = evidence(token, jwks_report(key, age="30"), issuer=ISS)
    assert needs_origin_check(ev)
    assert stale_cache_confirmed(ev) is None  # nothing asked past the cache yet
    ev = replace(ev, refetch=jwks_report(key, new, etag='"v2"'))
    assert not needs_origin_check(ev)
    d = decide(ev)
    assert (d.verdict, d.cause) == (Verdict.KID_NOT_PUBLISHED, "stale_cache")
    assert d.evidence[-1] == f'a no-cache request returned ETag "v2" with kid {new.kid}'


def test_stale_cache_from_age_past_max_age(key: Key) -> None:
    new = make_key(Alg.ES256, slot=1)
    token = new.sign(claims(ISS, NOW - 60))
    headers = {"cache-control": "max-age=300", "age": "900"}
    ev = evidence(token, jwks_report(key, **headers), issuer=ISS, refetch=jwks_report(key))
    d = stale_cache_signs(ev)
    assert d is not None and d.cause == "stale_cache"
    assert "Age 900s exceeds max-age 300s" in d.evidence


def test_hand_named_kid_against_thumbprint_issuer(key: Key) -> None:
    token = make_key(Alg.ES256, kid="prod-2024", slot=1).sign(claims(ISS, NOW - 60))
    ev = evidence(token, jwks_report(key), issuer=ISS, refetch=jwks_report(key))
    d = foreign_kid_kind(ev)
    assert d is not None and d.cause == "wrong_environment"


def test_keyturn_neither_published_nor_revoked(key: Key) -> None:
    token = make_key(Alg.ES256, slot=1).sign(claims(ISS, NOW - 60))
    ev = evidence(token, jwks_report(key), issuer=ISS, discovery=keyturn_discovery(), revoked={})
    d = unknown_to_keyturn(ev)
    assert d is not None and d.cause == "wrong_environment"
    assert unknown_to_keyturn(replace(ev, revoked=None)) is None  # feed unread: cannot tell


def test_rotation_without_overlap_is_what_remains(key: Key) -> None:
    other = make_key(Alg.ES256, slot=1)
    token = other.sign(claims(ISS, NOW - 60))
    d = decide(evidence(token, jwks_report(key), issuer=ISS, refetch=jwks_report(key)))
    assert (d.verdict, d.cause) == (Verdict.KID_NOT_PUBLISHED, "rotation_without_overlap")


def test_revoked_kid(key: Key) -> None:
    other = make_key(Alg.ES256, slot=1)
    token = other.sign(claims(ISS, NOW - 60))
    revoked = {other.kid: {"revoked_at": NOW - 600, "reason": "compromised"}}
    ev = evidence(token, jwks_report(key), issuer=ISS, revoked=revoked)
    d = kid_missing_here(ev)
    assert d is not None and (d.verdict, d.cause) == (Verdict.KID_NOT_PUBLISHED, "key_revoked")
    assert d.summary == (
        f"key {other.kid} was revoked 10m ago (compromised); revocation removes it from the JWKS "
        "at once"
    )
    assert not needs_origin_check(ev)


def test_reused_kid_is_a_bad_signature(key: Key) -> None:
    imposter = make_key(Alg.ES256, kid="k1", slot=1)
    published = make_key(Alg.ES256, kid="k1")
    token = imposter.sign(claims(ISS, NOW - 60))
    d = key_problem(evidence(token, jwks_report(published), issuer=ISS))
    assert d is not None and (d.verdict, d.cause) == (Verdict.SIGNATURE_INVALID, "kid_reused")


def test_audience_mismatch(key: Key, live: str) -> None:
    d = claims_invalid(evidence(live, jwks_report(key), issuer=ISS, audience="billing"))
    assert d is not None and d.verdict is Verdict.AUDIENCE_MISMATCH


@pytest.mark.parametrize(
    ("cache_control", "safe", "verdict"),
    [
        pytest.param("public, max-age=300", True, Verdict.OK, id="short"),
        pytest.param("public, max-age=172800", False, Verdict.CACHING_UNSAFE, id="two-days"),
        pytest.param("no-store", True, Verdict.OK, id="no-store"),
    ],
)
def test_caching_rule(
    key: Key, live: str, cache_control: str, safe: bool, verdict: Verdict
) -> None:
    ev = evidence(
        live,
        jwks_report(key, **{"cache-control": cache_control}),
        issuer=ISS,
        discovery=keyturn_discovery(rotation_period=86400, clock_skew=60),
    )
    c = assess_caching(ev)
    assert c is not None and c.safe is safe
    assert verified(ev).verdict is verdict


def test_findings_come_from_evidence_alone(key: Key, live: str) -> None:
    plain = "http://id.example/.well-known/jwks.json"
    ev = evidence(live, jwks_report(key, url=plain, date=DATE_NOW), jwks_url=plain)
    d: Decision = decide(ev)
    codes = [f.code for f in findings(ev, d)]
    assert codes == ["plain_http"]
