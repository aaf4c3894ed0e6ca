"""Behaviour 9 (typed errors with code and action) and the claim rules: iss, aud, exp, nbf, iat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from keyturn.clock import FakeClock
from keyturn.errors import (
    AlgorithmNotAllowedError,
    AudienceMismatchError,
    BadSignatureError,
    ConfigError,
    ExpiredTokenError,
    IssuerMismatchError,
    JWKSUnavailableError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    RevokedKidError,
    TokenError,
    UnknownKidError,
    UnsupportedAlgorithmError,
    UnsupportedHeaderError,
)
from keyturn.keys import Alg
from keyturn.keys.b64 import b64url_encode_str
from keyturn.verifier import AsyncVerifier, Verifier

from .conftest import ISSUER, JWKS_URL, FakeIssuer

MakeVerifier = Callable[..., Verifier]


def _swap_signature(token: str, other: str) -> str:
    return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _with_header(token: str, header: dict[str, Any]) -> str:
    import orjson

    _, payload, sig = token.split(".")
    return b64url_encode_str(orjson.dumps(header)) + "." + payload + "." + sig


CASES: list[Any] = [
    pytest.param("unknown_kid", UnknownKidError, "try_refresh", id="unknown-kid"),
    pytest.param("revoked_kid", RevokedKidError, "try_refresh", id="revoked-kid"),
    pytest.param("expired", ExpiredTokenError, "refresh", id="expired"),
    pytest.param("bad_signature", BadSignatureError, "reject", id="bad-signature"),
    pytest.param("issuer_mismatch", IssuerMismatchError, "reject", id="wrong-iss"),
    pytest.param("audience_mismatch", AudienceMismatchError, "reject", id="wrong-aud"),
    pytest.param("not_yet_valid", NotYetValidError, "reject", id="nbf-in-future"),
    pytest.param("claim_missing", MissingClaimError, "reject", id="missing-claim"),
    pytest.param("alg_not_allowed", AlgorithmNotAllowedError, "reject", id="alg-not-allowed"),
    pytest.param("header_unsupported", UnsupportedHeaderError, "reject", id="crit-header"),
    pytest.param("token_malformed", MalformedTokenError, "reject", id="malformed"),
    pytest.param("jwks_unavailable", JWKSUnavailableError, "retry", id="jwks-unavailable"),
]


@pytest.mark.parametrize(("code", "cls", "action"), CASES)
def test_each_failure_has_a_typed_error_code_and_action(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    code: str,
    cls: type[TokenError],
    action: str,
) -> None:
    kid = issuer.add_key()
    other = issuer.add_key()
    unpublished = issuer.add_key(publish=False)
    verifier = make_verifier(audience="api", algorithms=["ES256"])
    good = issuer.token(kid, aud="api")
    verifier.verify(good)
    makers: dict[str, Callable[[], str]] = {
        "unknown_kid": lambda: issuer.token(unpublished, aud="api"),
        "revoked_kid": lambda: (verifier.revoke([other]), issuer.token(other, aud="api"))[1],
        "expired": lambda: issuer.token(kid, aud="api", ttl=-120),
        "bad_signature": lambda: _swap_signature(good, issuer.token(kid, aud="api", sub="bob")),
        "issuer_mismatch": lambda: issuer.token(kid, aud="api", iss=ISSUER + ".evil"),
        "audience_mismatch": lambda: issuer.token(kid, aud="other"),
        "not_yet_valid": lambda: issuer.token(kid, aud="api", nbf=issuer.clock.now() + 600),
        "claim_missing": lambda: issuer.token(kid, aud="api", exp=None),
        "alg_not_allowed": lambda: _with_header(good, {"alg": "HS256", "kid": kid}),
        "header_unsupported": lambda: _with_header(good, {"alg": "ES256", "kid": kid, "crit": []}),
        "token_malformed": lambda: "not.a-token",
        "jwks_unavailable": lambda: issuer.token(kid, aud="api"),
    }
    token = makers[code]()
    if code == "jwks_unavailable":
        verifier = make_verifier(jwks_url="https://down.example/jwks.json", audience="api")
    with pytest.raises(cls) as info:
        verifier.verify(token)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.action == action
    assert verifier.metrics.snapshot().outcomes.get(code) == 1


def test_skew_leeway_applies_to_exp_nbf_and_iat(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier(leeway=30)
    now = clock.now()
    assert verifier.verify(issuer.token(kid, exp=now - 20))
    assert verifier.verify(issuer.token(kid, nbf=now + 20, iat=now + 20))
    with pytest.raises(ExpiredTokenError):
        verifier.verify(issuer.token(kid, exp=now - 40))
    with pytest.raises(NotYetValidError):
        verifier.verify(issuer.token(kid, iat=now + 40))


def test_issuer_defaults_to_the_configured_issuer_and_can_be_widened(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    with pytest.raises(MissingClaimError):
        make_verifier().verify(issuer.token(kid, iss=None))
    # Configured by JWKS URL only: no issuer to compare with unless one is given.
    assert make_verifier(jwks_url=JWKS_URL).verify(issuer.token(kid, iss="https://any.example"))
    widened = make_verifier(accept_issuers=[ISSUER, "https://legacy.example"])
    assert widened.verify(issuer.token(kid, iss="https://legacy.example"))
    with pytest.raises(IssuerMismatchError):
        widened.verify(issuer.token(kid, iss="https://legacy.example.evil"))


def test_audience_may_be_several_and_token_may_list_several(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier(audience=["api", "admin"])
    assert verifier.verify(issuer.token(kid, aud=["web", "admin"]))
    with pytest.raises(MissingClaimError):
        verifier.verify(issuer.token(kid))


def test_required_claims(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    kid = issuer.add_key()
    verifier = make_verifier(required_claims=["exp", "sub", "jti"])
    with pytest.raises(MissingClaimError, match="jti"):
        verifier.verify(issuer.token(kid))
    assert verifier.verify(issuer.token(kid, jti="1"))


def test_allow_list_narrows_alg_less_keys(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    kid = issuer.add_key(Alg.ES256)
    del issuer.published[kid]["alg"]  # real-world sets often omit alg; matched by kty/crv
    del issuer.published[kid]["use"]
    assert make_verifier(algorithms=["ES256"]).verify(issuer.token(kid))
    with pytest.raises(AlgorithmNotAllowedError):
        make_verifier(algorithms=["EdDSA"]).verify(issuer.token(kid))


@pytest.mark.parametrize(
    ("algorithms", "error"),
    [
        pytest.param([], ConfigError, id="empty"),
        pytest.param("ES256", ConfigError, id="bare-string"),
        pytest.param(["none"], UnsupportedAlgorithmError, id="none"),
        pytest.param(["HS256"], UnsupportedAlgorithmError, id="hmac"),
    ],
)
def test_algorithm_allow_list_is_explicit(algorithms: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Verifier(algorithms=algorithms, jwks_url=JWKS_URL)
    with pytest.raises(error):
        AsyncVerifier(algorithms=algorithms, jwks_url=JWKS_URL)


def test_algorithms_argument_is_required() -> None:
    with pytest.raises(TypeError):
        Verifier(jwks_url=JWKS_URL)  # type: ignore[call-arg]


def test_malformed_token_costs_no_fetch(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier()
    for junk in ("", "a.b", "a.b.c", "e30.e30.", "x" * 20000):
        with pytest.raises(TokenError):
            verifier.verify(junk)
    assert issuer.fetches == 0 and issuer.discovery_requests == 0


def test_unreachable_host_is_jwks_unavailable(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    verifier = make_verifier(transport=httpx.MockTransport(refuse))
    with pytest.raises(JWKSUnavailableError) as info:
        verifier.verify(issuer.token(kid))
    assert info.value.action == "retry"
    assert "connection refused" in str(info.value)
