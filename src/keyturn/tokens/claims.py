"""Registered-claim validation (RFC 7519 section 4.1), separate from signature checking."""

from __future__ import annotations

import math
from collections.abc import Collection
from math import isfinite
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

# How deep claims (and other JSON keyturn reads and prints) may nest: what the sign API allows.
# orjson refuses to serialise past 254 levels, so a deeper, validly signed token would otherwise
# verify and then fail to print (a traceback, a 500).
MAX_JSON_DEPTH = 32

_ABSENT = object()


def json_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether objects and arrays in ``value`` nest deeper than ``limit`` levels (iterative: a
    hostile document cannot exhaust the Python stack here)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


_MAX_EXACT = 2**53
_MIN_EXACT = -_MAX_EXACT  # a constant: negating per token would allocate a new int


def _numeric(name: str, value: object) -> float | int:
    """A NumericDate that is not a plain int within double range (the fast path's case)."""
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


def check_claims(
    claims: dict[str, Any],
    now: float,
    leeway: float,
    issuer: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    required: Collection[str],
) -> None:
    """``validate_claims`` with positional arguments, for the verify hot paths.

    Written for speed (it runs once per token): the common case of integer dates and a string
    ``iss``/``aud`` takes no helper call and builds no list.
    """
    # A NaN or infinite ``now``/``leeway`` makes every time comparison below false, so an
    # expired token would pass: fail closed on the caller's configuration instead.
    if not isfinite(now):
        raise ConfigError("'now' must be a finite number of seconds")
    if not isfinite(leeway) or leeway < 0:
        raise ConfigError("leeway must be a finite, non-negative number of seconds")
    for name in required:
        if name not in claims:
            raise MissingClaimError(f"required claim {name!r} is missing")
    # Plain ints within double range compare exactly with floats; anything else (bool, null,
    # float, huge int, string) goes through _numeric, which refuses what is not a date.
    # Every date is checked for type before any is compared: a malformed date is reported as
    # such, whatever the others say.
    exp = claims.get("exp", _ABSENT)
    if exp is not _ABSENT and (type(exp) is not int or not _MIN_EXACT <= exp <= _MAX_EXACT):
        exp = _numeric("exp", exp)
    nbf = claims.get("nbf", _ABSENT)
    if nbf is not _ABSENT and (type(nbf) is not int or not _MIN_EXACT <= nbf <= _MAX_EXACT):
        nbf = _numeric("nbf", nbf)
    iat = claims.get("iat", _ABSENT)
    if iat is not _ABSENT and (type(iat) is not int or not _MIN_EXACT <= iat <= _MAX_EXACT):
        iat = _numeric("iat", iat)
    if exp is not _ABSENT and now >= exp + leeway:
        raise ExpiredTokenError(f"token expired {now - exp:.0f}s ago", expired_seconds=now - exp)
    if nbf is not _ABSENT and now + leeway < nbf:
        raise NotYetValidError(f"token not valid for another {nbf - now:.0f}s")
    if iat is not _ABSENT and now + leeway < iat:
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
        if type(aud) is str:
            # isinstance, not type(): "aud in audience" on a str subclass would be a substring
            # match (a partial-match advisory class).
            if aud == audience if isinstance(audience, str) else aud in audience:
                return
        elif aud is None:
            raise MissingClaimError("claim 'aud' is missing")
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            if isinstance(audience, str):
                if audience in aud:
                    return
            elif any(a in audience for a in aud):
                return
        else:
            raise ClaimError("claim 'aud' must be a string or a list of strings")
        raise AudienceMismatchError(f"audience {aud!r} is not accepted")


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
    check_claims(claims, now, leeway, issuer, audience, required)
