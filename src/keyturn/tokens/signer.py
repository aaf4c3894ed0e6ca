"""The signing hot path: a prepared key and a pre-encoded protected header per key."""

from __future__ import annotations

import secrets
from typing import Any

from keyturn.keys.algorithms import Alg, PrivateKey
from keyturn.keys.backends.base import RawSigner
from keyturn.tokens.jws import SigningKey, encode_segment, sign_compact


class TokenSigner:
    """Signs claims with one key. Immutable: a key change swaps in a new signer atomically."""

    __slots__ = ("_header", "_key", "alg", "kid")

    def __init__(
        self, private_key: PrivateKey | RawSigner, alg: Alg, kid: str, typ: str = "JWT"
    ) -> None:
        # A private key in memory is prepared here; a key backend's signer (a token) is used
        # as it is: it already returns JWS signature bytes.
        self._key: RawSigner = (
            SigningKey(private_key, alg) if isinstance(private_key, PrivateKey) else private_key
        )
        self.alg = alg
        self.kid = kid
        self._header = encode_segment({"alg": alg.value, "kid": kid, "typ": typ})

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` as given (no claim is added here; see ``issue_claims``)."""
        return sign_compact(self._header, claims, self._key)


def issue_claims(
    claims: dict[str, Any], *, issuer: str, now: int, ttl: int, not_before: int | None = None
) -> dict[str, Any]:
    """Add ``iss``, ``iat``, ``nbf``, ``exp`` and a random ``jti`` to caller claims."""
    out = dict(claims)
    out["iss"] = issuer
    out["iat"] = now
    out["nbf"] = not_before if not_before is not None else now
    out["exp"] = now + ttl
    out.setdefault("jti", secrets.token_urlsafe(16))
    return out
