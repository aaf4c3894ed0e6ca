"""Registered-claim validation (RFC 7519 section 4.1), separate from signature checking."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from keyturn.errors import (
    AudienceMismatchError,
    ClaimError,
    ConfigError,
    ExpiredTokenError,
    IssuerMismatchError,
    MissingClaimError,
    NotYetValidError,
)

_ABSENT = object()
_MAX_EXACT = 2**53


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    # Fast path for the common case: a plain int within double range (type() excludes bool).
    if type(value) is int and -_MAX_EXACT <= value <= _MAX_EXACT:
        return float(value)
    # bool is an int in Python; a token saying "exp": true is malformed, not "exp": 1. A null,
    # NaN or infinite "exp" must not count as present-and-fine: it would never expire.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(f"claim {name!r} must be a NumericDate (number)")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: no real date
        raise ClaimError(f"claim {name!r} is out of range") from None
    if not math.isfinite(number):
        raise ClaimError(f"claim {name!r} must be a finite number")
    return number


def validate_claims(
    claims: dict[str, Any],
    *,
    now: float,
    leeway: float = 0.0,
    issuer: str | Collection[str] | None = None,
    audience: str | Collection[str] | None = None,
    required: Collection[str] = ("exp",),
) -> None:
    """Check time claims with ``leeway`` seconds of skew, then ``iss`` and ``aud``.

    ``iss`` is compared exactly (never a substring: a PyJWT advisory class). ``aud`` may be a
    string or a list in the token; the token passes if any of its audiences is accepted.
    """
    # A NaN or infinite ``now``/``leeway`` makes every time comparison below false, so an
    # expired token would pass: fail closed on the caller's configuration instead.
    if not math.isfinite(now):
        raise ConfigError("'now' must be a finite number of seconds")
    if not math.isfinite(leeway) or leeway < 0:
        raise ConfigError("leeway must be a finite, non-negative number of seconds")
    for name in required:
        if name not in claims:
            raise MissingClaimError(f"required claim {name!r} is missing")
    exp = _numeric(claims, "exp")
    nbf = _numeric(claims, "nbf")
    iat = _numeric(claims, "iat")
    if exp is not None and now >= exp + leeway:
        raise ExpiredTokenError(f"token expired {now - exp:.0f}s ago", expired_seconds=now - exp)
    if nbf is not None and now + leeway < nbf:
        raise NotYetValidError(f"token not valid for another {nbf - now:.0f}s")
    if iat is not None and now + leeway < iat:
        raise NotYetValidError(f"token issued {iat - now:.0f}s in the future (clock skew?)")
    if issuer is not None:
        iss = claims.get("iss")
        if iss is None:
            raise MissingClaimError("claim 'iss' is missing")
        if not isinstance(iss, str) or not (
            iss == issuer if isinstance(issuer, str) else iss in issuer
        ):
            raise IssuerMismatchError(f"issuer {iss!r} is not accepted")
    if audience is not None:
        aud = claims.get("aud")
        if aud is None:
            raise MissingClaimError("claim 'aud' is missing")
        token_auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(token_auds, list) or not all(isinstance(a, str) for a in token_auds):
            raise ClaimError("claim 'aud' must be a string or a list of strings")
        if isinstance(audience, str):
            matched = audience in token_auds
        else:
            matched = any(a in audience for a in token_auds)
        if not matched:
            raise AudienceMismatchError(f"audience {aud!r} is not accepted")
