"""Verify a token against a key set: parse, choose key by kid, check signature, then claims."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cryptography.exceptions import InvalidSignature
from orjson import JSONDecodeError, loads

from keyturn.errors import BadSignatureError, MalformedTokenError, RevokedKidError, UnknownKidError
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode
from keyturn.tokens.claims import check_claims
from keyturn.tokens.jws import (
    DEFAULT_MAX_TOKEN_BYTES,
    ParsedToken,
    VerifyingKey,
    key_alg_error,
    parse_compact,
)
from keyturn.tokens.keyset import KeySet


def select_key(parsed: ParsedToken, keyset: KeySet, revoked: Collection[str] = ()) -> VerifyingKey:
    """The key for the token's kid; never a key named by the token's own headers."""
    kid = parsed.kid
    if kid is not None:
        if kid in revoked:
            raise RevokedKidError(f"key {kid} has been revoked", kid=kid)
        key = keyset.keys.get(kid)
        if key is None:
            raise UnknownKidError(f"kid {kid} is not in the key set", kid=kid)
        return key
    # No kid: acceptable only if exactly one key could have signed with this algorithm.
    # Revoked keys never count, or a kid-less token could still be verified by one.
    candidates = [
        k
        for k in (*keyset.keys.values(), *keyset.anonymous)
        if parsed.alg in k.algs and k.kid not in revoked
    ]
    if len(candidates) != 1:
        raise UnknownKidError("token has no kid and the key set does not identify one key")
    return candidates[0]


def verify_token(
    token: str | bytes,
    keyset: KeySet,
    *,
    algorithms: Collection[Alg],
    now: float,
    leeway: float = 60.0,
    issuer: str | Collection[str] | None = None,
    audience: str | Collection[str] | None = None,
    required: Collection[str] = ("exp",),
    revoked: Collection[str] = (),
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
) -> tuple[dict[str, Any], ParsedToken]:
    """Return (claims, parsed token) or raise a ``TokenError`` with a stable code and action."""
    allowed = algorithms if type(algorithms) is frozenset else frozenset(algorithms)
    parsed = parse_compact(token, allowed_algs=allowed, max_token_bytes=max_token_bytes)
    claims = verified_claims(parsed, keyset, revoked, now, leeway, issuer, audience, required)
    return claims, parsed


def verified_claims(
    parsed: ParsedToken,
    keyset: KeySet,
    revoked: Collection[str],
    now: float,
    leeway: float,
    issuer: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    required: Collection[str],
) -> dict[str, Any]:
    """Key, signature, then claims of a parsed token: the per-token core of every verify path.

    ``verify_token`` and ``keyturn.verifier`` both end here. Positional and flat on purpose: it
    runs once per token, and the common case (a kid that is in the set and not revoked) takes
    no ``select_key`` frame; anything else goes through ``select_key`` for its exact error.
    """
    kid = parsed.kid
    key = keyset.keys.get(kid) if kid is not None and kid not in revoked else None
    if key is None:
        key = select_key(parsed, keyset, revoked)
    # verify_parsed and ParsedToken.payload, inlined (two frames less per token).
    check = key._checks.get(parsed.alg)
    if check is None:
        raise key_alg_error(key, parsed.alg)
    try:
        check(parsed.signature, parsed.signing_input)
    except (InvalidSignature, ValueError):
        raise BadSignatureError(f"signature does not verify with key {key.kid}") from None
    try:
        claims = loads(b64url_decode(parsed.payload_segment))
    except (ValueError, JSONDecodeError):
        raise MalformedTokenError("payload is not base64url-encoded JSON") from None
    if type(claims) is not dict:
        raise MalformedTokenError("payload is not a JSON object")
    check_claims(claims, now, leeway, issuer, audience, required)
    return claims
