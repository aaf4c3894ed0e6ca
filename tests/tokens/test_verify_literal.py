"""verify_token and the claim checks with literal values: the survivors of scripts/mutate.

Each test kills mutants that the rest of tests/tokens let live (docs/mutation.md): every
argument of verify_token reaches the check it names, the default leeway is 60 s and
validate_claims' is 0 s, select_key on its own returns the key, and every refusal carries its
exact message and extras.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyturn import errors as E
from keyturn.keys.algorithms import Alg
from keyturn.tokens.claims import check_claims, validate_claims
from keyturn.tokens.jws import parse_compact
from keyturn.tokens.verify import select_key, verify_token
from tests.keys.material import jwk_of, keyset_of, signer_of

NOW = 1_800_000_000
ES = frozenset({Alg.ES256})
ISS = "https://issuer.test"


def _token(**claims: Any) -> str:
    body: dict[str, Any] = {"iss": ISS, "aud": "api", "sub": "a", "exp": NOW + 60}
    body.update(claims)
    return signer_of(Alg.ES256).sign({k: v for k, v in body.items() if v is not None})


def _keyset() -> Any:
    return keyset_of(jwk_of(Alg.ES256))


def test_verify_token_passes_issuer_audience_and_required_on() -> None:
    ks = _keyset()
    token = _token()
    claims, _ = verify_token(token, ks, algorithms=ES, now=NOW, issuer=ISS, audience="api")
    assert claims["sub"] == "a"
    with pytest.raises(E.IssuerMismatchError):
        verify_token(token, ks, algorithms=ES, now=NOW, issuer="https://other.test")
    with pytest.raises(E.AudienceMismatchError):
        verify_token(token, ks, algorithms=ES, now=NOW, audience="other")
    with pytest.raises(E.MissingClaimError):
        verify_token(token, ks, algorithms=ES, now=NOW, required=("exp", "jti"))
    # required=() really means nothing is required: a token without exp passes.
    no_exp = _token(exp=None)
    verify_token(no_exp, ks, algorithms=ES, now=NOW, required=())
    with pytest.raises(E.MissingClaimError):
        verify_token(no_exp, ks, algorithms=ES, now=NOW)  # the default requires exp


def test_verify_token_default_leeway_is_60_seconds() -> None:
    ks = _keyset()
    token = _token(exp=NOW)
    verify_token(token, ks, algorithms=ES, now=NOW + 59)  # within 60 s of leeway
    with pytest.raises(E.ExpiredTokenError):
        verify_token(token, ks, algorithms=ES, now=NOW + 60)
    with pytest.raises(E.ExpiredTokenError):
        verify_token(token, ks, algorithms=ES, now=NOW + 1, leeway=0)


def test_verify_token_passes_max_token_bytes_on() -> None:
    token = _token()
    with pytest.raises(E.TokenTooLargeError):
        verify_token(token, _keyset(), algorithms=ES, now=NOW, max_token_bytes=len(token) - 1)
    verify_token(token, _keyset(), algorithms=ES, now=NOW, max_token_bytes=len(token))


def test_verify_token_accepts_a_list_or_a_frozenset_of_algorithms() -> None:
    for algorithms in ([Alg.ES256], ES, (Alg.ES256,)):
        verify_token(_token(), _keyset(), algorithms=algorithms, now=NOW)
    with pytest.raises(E.TokenError):
        verify_token(_token(), _keyset(), algorithms=[Alg.RS256], now=NOW)


def test_select_key_on_its_own() -> None:
    ks = _keyset()
    kid = signer_of(Alg.ES256).kid
    parsed = parse_compact(_token(), allowed_algs=ES)
    assert select_key(parsed, ks) is ks.keys[kid]
    with pytest.raises(E.RevokedKidError) as revoked:
        select_key(parsed, ks, revoked={kid})
    assert revoked.value.detail == f"key {kid} has been revoked"
    assert revoked.value.extra["kid"] == kid
    with pytest.raises(E.UnknownKidError) as unknown:
        select_key(parsed, keyset_of())
    assert unknown.value.detail == f"kid {kid} is not in the key set"
    assert unknown.value.extra["kid"] == kid


@pytest.mark.parametrize(
    ("claims", "kwargs", "error", "detail"),
    [
        ({}, {"now": float("nan")}, E.ConfigError, "'now' must be a finite number of seconds"),
        (
            {},
            {"leeway": -1.0},
            E.ConfigError,
            "leeway must be a finite, non-negative number of seconds",
        ),
        ({}, {}, E.MissingClaimError, "required claim 'exp' is missing"),
        ({"exp": "soon"}, {}, E.ClaimError, "claim 'exp' must be a NumericDate (number)"),
        ({"exp": 10**400}, {}, E.ClaimError, "claim 'exp' is out of range"),
        ({"exp": float("inf")}, {}, E.ClaimError, "claim 'exp' must be a finite number"),
        ({"exp": NOW, "nbf": True}, {}, E.ClaimError, "claim 'nbf' must be a NumericDate (number)"),
        ({"exp": NOW, "iat": None}, {}, E.ClaimError, "claim 'iat' must be a NumericDate (number)"),
        ({"exp": NOW - 100}, {}, E.ExpiredTokenError, "token expired 100s ago"),
        (
            {"exp": NOW + 9, "nbf": NOW + 30},
            {},
            E.NotYetValidError,
            "token not valid for another 30s",
        ),
        (
            {"exp": NOW + 99, "iat": NOW + 40},
            {},
            E.NotYetValidError,
            "token issued 40s in the future (clock skew?)",
        ),
        ({"exp": NOW + 9}, {"issuer": ISS}, E.MissingClaimError, "claim 'iss' is missing"),
        (
            {"exp": NOW + 9, "iss": "https://x.test"},
            {"issuer": ISS},
            E.IssuerMismatchError,
            "issuer 'https://x.test' is not accepted",
        ),
        ({"exp": NOW + 9}, {"audience": "api"}, E.MissingClaimError, "claim 'aud' is missing"),
        (
            {"exp": NOW + 9, "aud": 7},
            {"audience": "api"},
            E.ClaimError,
            "claim 'aud' must be a string or a list of strings",
        ),
        (
            {"exp": NOW + 9, "aud": "web"},
            {"audience": "api"},
            E.AudienceMismatchError,
            "audience 'web' is not accepted",
        ),
    ],
)
def test_each_refusal_has_its_exact_message(
    claims: dict[str, Any], kwargs: dict[str, Any], error: type[E.TokenError], detail: str
) -> None:
    args: dict[str, Any] = {
        "now": float(NOW),
        "leeway": 0.0,
        "issuer": None,
        "audience": None,
        "required": ("exp",),
    }
    args.update(kwargs)
    with pytest.raises(error) as info:
        check_claims(claims, **args)
    assert type(info.value) is error
    assert info.value.detail == detail


def test_expired_carries_the_seconds() -> None:
    with pytest.raises(E.ExpiredTokenError) as info:
        check_claims({"exp": NOW - 100}, float(NOW), 0.0, None, None, ())
    assert info.value.extra["expired_seconds"] == 100


def test_validate_claims_default_leeway_is_zero() -> None:
    validate_claims({"exp": NOW + 1}, now=NOW)
    with pytest.raises(E.ExpiredTokenError):
        validate_claims({"exp": NOW}, now=NOW)
