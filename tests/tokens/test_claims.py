"""Registered-claim validation: time claims with leeway, exact issuer, audience, required."""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.errors import (
    AudienceMismatchError,
    ClaimError,
    ExpiredTokenError,
    IssuerMismatchError,
    MissingClaimError,
    NotYetValidError,
)
from keyturn.tokens.claims import validate_claims

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("exp", "leeway", "ok"),
    [
        pytest.param(NOW + 1, 0, True, id="one-second-left"),
        pytest.param(NOW, 0, False, id="exp-equals-now"),
        pytest.param(NOW - 1, 0, False, id="one-second-late"),
        pytest.param(NOW - 59, 60, True, id="inside-leeway"),
        pytest.param(NOW - 60, 60, False, id="at-leeway-edge"),
        pytest.param(NOW - 61, 60, False, id="past-leeway"),
        pytest.param(NOW + 0.5, 0, True, id="fractional"),
    ],
)
def test_exp_boundaries(exp: float, leeway: float, ok: bool) -> None:
    claims = {"exp": exp}
    if ok:
        validate_claims(claims, now=NOW, leeway=leeway)
    else:
        with pytest.raises(ExpiredTokenError) as info:
            validate_claims(claims, now=NOW, leeway=leeway)
        assert info.value.action == "refresh"


@pytest.mark.parametrize(
    ("name", "value", "leeway", "ok"),
    [
        pytest.param("nbf", NOW, 0, True, id="nbf-now"),
        pytest.param("nbf", NOW + 1, 0, False, id="nbf-one-second-ahead"),
        pytest.param("nbf", NOW + 60, 60, True, id="nbf-at-leeway-edge"),
        pytest.param("nbf", NOW + 61, 60, False, id="nbf-past-leeway"),
        pytest.param("iat", NOW, 0, True, id="iat-now"),
        pytest.param("iat", NOW - 3600, 0, True, id="iat-past"),
        pytest.param("iat", NOW + 1, 0, False, id="iat-future"),
        pytest.param("iat", NOW + 60, 60, True, id="iat-at-leeway-edge"),
        pytest.param("iat", NOW + 61, 60, False, id="iat-past-leeway"),
    ],
)
def test_nbf_iat_boundaries(name: str, value: float, leeway: float, ok: bool) -> None:
    claims = {"exp": NOW + 3600, name: value}
    if ok:
        validate_claims(claims, now=NOW, leeway=leeway)
    else:
        with pytest.raises(NotYetValidError):
            validate_claims(claims, now=NOW, leeway=leeway)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param("1700000000", id="string"),
        pytest.param([NOW], id="list"),
        pytest.param(None, id="null"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(10**400, id="huge-int"),
    ],
)
def test_time_claims_must_be_finite_numbers(name: str, value: Any) -> None:
    claims = {"exp": NOW + 3600, name: value}
    with pytest.raises(ClaimError):
        validate_claims(claims, now=NOW)


def test_null_exp_is_not_a_token_that_never_expires() -> None:
    # Regression: "exp": null satisfied required=("exp",) and then skipped the expiry check.
    with pytest.raises(ClaimError):
        validate_claims({"exp": None}, now=NOW)


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param("https://iss", id="exact"),
        pytest.param(["https://other", "https://iss"], id="one-of-accepted"),
    ],
)
def test_issuer_exact_match(iss: str | list[str]) -> None:
    validate_claims({"exp": NOW + 1, "iss": "https://iss"}, now=NOW, issuer=iss)


@pytest.mark.parametrize(
    ("token_iss", "accepted"),
    [
        pytest.param("https://iss.evil", "https://iss", id="prefix-of-token"),
        pytest.param("https://is", "https://iss", id="substring-of-accepted"),
        pytest.param("iss", "https://iss", id="suffix"),
        pytest.param("https://iss/", "https://iss", id="trailing-slash"),
        pytest.param("HTTPS://ISS", "https://iss", id="case"),
        pytest.param("https://iss", "https://iss.evil", id="accepted-is-longer"),
        pytest.param("https://i", ["https://iss", "https://other"], id="substring-in-list"),
        pytest.param(["https://iss"], "https://iss", id="token-iss-is-list"),
        pytest.param(1, "https://iss", id="token-iss-not-string"),
    ],
)
def test_issuer_partial_match_fails(token_iss: Any, accepted: str | list[str]) -> None:
    with pytest.raises(IssuerMismatchError):
        validate_claims({"exp": NOW + 1, "iss": token_iss}, now=NOW, issuer=accepted)


def test_issuer_missing() -> None:
    with pytest.raises(MissingClaimError):
        validate_claims({"exp": NOW + 1}, now=NOW, issuer="https://iss")


def test_issuer_not_checked_when_not_asked() -> None:
    validate_claims({"exp": NOW + 1, "iss": "anything"}, now=NOW)


@pytest.mark.parametrize(
    ("token_aud", "accepted"),
    [
        pytest.param("api", "api", id="string-string"),
        pytest.param(["web", "api"], "api", id="list-string"),
        pytest.param("api", ["api", "admin"], id="string-list"),
        pytest.param(["web", "api"], ["admin", "api"], id="list-list"),
    ],
)
def test_audience_match(token_aud: Any, accepted: str | list[str]) -> None:
    validate_claims({"exp": NOW + 1, "aud": token_aud}, now=NOW, audience=accepted)


@pytest.mark.parametrize(
    ("token_aud", "accepted", "error"),
    [
        pytest.param("apiv2", "api", AudienceMismatchError, id="prefix"),
        pytest.param("ap", "api", AudienceMismatchError, id="substring"),
        pytest.param([], "api", AudienceMismatchError, id="empty-list"),
        pytest.param(["web"], ["api", "admin"], AudienceMismatchError, id="disjoint"),
        pytest.param(["api", 1], "api", ClaimError, id="list-with-number"),
        pytest.param({"api": True}, "api", ClaimError, id="object"),
        pytest.param(None, "api", MissingClaimError, id="null"),
    ],
)
def test_audience_mismatch(token_aud: Any, accepted: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_claims({"exp": NOW + 1, "aud": token_aud}, now=NOW, audience=accepted)


def test_audience_missing() -> None:
    with pytest.raises(MissingClaimError):
        validate_claims({"exp": NOW + 1}, now=NOW, audience="api")


@pytest.mark.parametrize(
    ("claims", "required"),
    [
        pytest.param({}, ("exp",), id="exp-by-default"),
        pytest.param({"exp": NOW + 1}, ("exp", "sub"), id="sub"),
        pytest.param({"exp": NOW + 1, "sub": "x"}, ("exp", "sub", "jti"), id="jti"),
    ],
)
def test_missing_required(claims: dict[str, Any], required: tuple[str, ...]) -> None:
    with pytest.raises(MissingClaimError):
        validate_claims(claims, now=NOW, required=required)


def test_nothing_required() -> None:
    validate_claims({}, now=NOW, required=())
