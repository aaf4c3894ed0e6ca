"""The hot-path claim check against a plainly written reference: same verdict for any claims.

``check_claims`` is written for speed (type() fast paths, no lists); this holds it to the
straightforward reading of RFC 7519 below, for dates of every JSON type and every shape of
``iss``/``aud`` and of the caller's rules.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from keyturn.errors import (
    AudienceMismatchError,
    ClaimError,
    ExpiredTokenError,
    IssuerMismatchError,
    MissingClaimError,
    NotYetValidError,
    TokenError,
)
from keyturn.tokens.claims import check_claims

NOW = 1_700_000_000


def _date(claims: dict[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(name)
    try:
        number = float(value)
    except OverflowError:
        raise ClaimError(name) from None
    if not math.isfinite(number):
        raise ClaimError(name)
    return number


def reference(
    claims: dict[str, Any],
    now: float,
    leeway: float,
    issuer: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    required: Collection[str],
) -> None:
    for name in required:
        if name not in claims:
            raise MissingClaimError(name)
    exp, nbf, iat = _date(claims, "exp"), _date(claims, "nbf"), _date(claims, "iat")
    if exp is not None and now >= exp + leeway:
        raise ExpiredTokenError("exp")
    if nbf is not None and now + leeway < nbf:
        raise NotYetValidError("nbf")
    if iat is not None and now + leeway < iat:
        raise NotYetValidError("iat")
    if issuer is not None:
        iss = claims.get("iss")
        if iss is None:
            raise MissingClaimError("iss")
        accepted = [issuer] if isinstance(issuer, str) else list(issuer)
        if not isinstance(iss, str) or iss not in accepted:
            raise IssuerMismatchError("iss")
    if audience is not None:
        aud = claims.get("aud")
        if aud is None:
            raise MissingClaimError("aud")
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise ClaimError("aud")
        accepted = [audience] if isinstance(audience, str) else list(audience)
        if not any(a in accepted for a in auds):
            raise AudienceMismatchError("aud")


_DATES = st.one_of(
    st.integers(min_value=NOW - 200, max_value=NOW + 200),
    st.floats(min_value=NOW - 200, max_value=NOW + 200),
    st.sampled_from([True, False, None, "1700000000", 2**53, 2**53 + 1, -(2**53) - 1, 10**400]),
    st.sampled_from([math.nan, math.inf, -math.inf, [NOW], {"t": NOW}]),
)
_NAMES = st.sampled_from(["api", "app", "ap", "api2", "https://iss", "https://iss/"])
_CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "exp": _DATES,
        "nbf": _DATES,
        "iat": _DATES,
        "iss": st.one_of(_NAMES, st.none(), st.integers(), st.lists(_NAMES, max_size=2)),
        "aud": st.one_of(
            _NAMES,
            st.none(),
            st.lists(_NAMES, max_size=3),
            st.lists(st.one_of(_NAMES, st.integers()), max_size=3),
            st.dictionaries(_NAMES, _NAMES, max_size=1),
        ),
        "sub": _NAMES,
    },
)
_ACCEPT = st.one_of(st.none(), _NAMES, st.frozensets(_NAMES, max_size=3), st.lists(_NAMES))


@given(
    claims=_CLAIMS,
    leeway=st.sampled_from([0, 0.5, 1, 30, 60, 120]),
    issuer=_ACCEPT,
    audience=_ACCEPT,
    required=st.lists(st.sampled_from(["exp", "iat", "nbf", "sub", "jti"]), unique=True),
)
def test_check_claims_gives_the_reference_verdict(
    claims: dict[str, Any],
    leeway: float,
    issuer: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    required: list[str],
) -> None:
    verdicts = []
    for fn in (check_claims, reference):
        try:
            fn(claims, NOW, leeway, issuer, audience, required)
            verdicts.append(None)
        except TokenError as exc:  # compare the exact class: it carries the stable code
            verdicts.append(type(exc))
    assert verdicts[0] == verdicts[1], claims
