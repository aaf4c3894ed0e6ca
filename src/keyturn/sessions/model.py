"""OAuth clients, sessions (refresh-token families), refresh tokens and the session policy.

Plain values, no I/O. Secrets (client secrets, refresh tokens) are 256 random bits shown once
and kept only as SHA-256 digests: a slow password hash defends secrets a person chose, which
can be guessed; 256 random bits cannot, so one fast hash is as strong and keeps the token
endpoint fast. Digests are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from keyturn.errors import InvalidInputError

REFRESH_PREFIX = "ktr_"
CLIENT_ID_PREFIX = "ktc_"
SECRET_PREFIX = "kts_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32  # 256 bits, for client secrets and refresh tokens
CLIENT_ID_BYTES = 12
SESSION_ID_BYTES = 16
# token_urlsafe(32) is 43 characters; with the prefix 47. Anything far longer is not ours.
MAX_SECRET_LENGTH = 128
MAX_CLIENT_ID_LENGTH = 64
MAX_SUBJECT_LENGTH = 255
MAX_DESCRIPTION = 200
MAX_AUDIENCE = 255
MAX_SCOPE_TOKENS = 32
MAX_SCOPE_TOKEN_LENGTH = 64
MAX_REASON = 500
# Claims that keyturn sets on every session access token; a session may not carry its own.
SESSION_RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "iat", "exp", "nbf", "jti", "sid", "client_id", "scope"}
)
# RFC 6749 appendix A.4: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
_CLIENT_ID = re.compile(r"ktc_[0-9a-f]{24}\Z")
# RFC 6749 appendix A.1: client_id = *VSCHAR; ours are hex behind a prefix, checked as such.

MINUTE = 60.0
DAY = 86400.0


class GrantType(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant type name, not a secret)


class AuthMethod(StrEnum):
    """How a client authenticates at the token endpoint (RFC 7591 names)."""

    BASIC = "client_secret_basic"
    POST = "client_secret_post"
    NONE = "none"  # a public client (a browser or mobile app): no secret to keep


GRANT_TYPES: tuple[str, ...] = tuple(g.value for g in GrantType)
AUTH_METHODS: tuple[str, ...] = tuple(m.value for m in AuthMethod)


def hash_secret(secret: str) -> str:
    """The stored form of a client secret or refresh token: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def digests_match(presented_hash: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of two digests (a missing one never matches)."""
    if stored_hash is None:
        hmac.compare_digest(presented_hash, "0" * 64)
        return False
    return hmac.compare_digest(presented_hash, stored_hash)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_hex(CLIENT_ID_BYTES)


def new_session_id() -> str:
    return secrets.token_hex(SESSION_ID_BYTES)


def looks_like_refresh_token(value: str) -> bool:
    return value.startswith(REFRESH_PREFIX) and len(value) <= MAX_SECRET_LENGTH


def valid_client_id(value: str) -> bool:
    return bool(_CLIENT_ID.match(value))


def parse_scope(value: str | None) -> tuple[str, ...]:
    """A space-delimited scope string (RFC 6749 section 3.3) as sorted unique tokens."""
    if value is None:
        return ()
    tokens = value.split(" ")
    if any(t == "" for t in tokens) and value != "":
        raise InvalidInputError("scope: tokens are separated by single spaces")
    tokens = [t for t in tokens if t]
    if len(tokens) > MAX_SCOPE_TOKENS:
        raise InvalidInputError(f"scope: at most {MAX_SCOPE_TOKENS} tokens")
    for t in tokens:
        if not _SCOPE_TOKEN.match(t):
            raise InvalidInputError(
                f"scope: each token is 1-{MAX_SCOPE_TOKEN_LENGTH} printable characters "
                "without spaces, quotes or backslashes"
            )
    return tuple(sorted(set(tokens)))


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a number of seconds")
    if value <= 0:
        raise InvalidInputError(f"{name} must be positive")


MAX_REUSE_GRACE = 60.0


@dataclass(frozen=True)
class SessionPolicy:
    """Lifetimes of a tenant's sessions, in seconds.

    ``access_ttl``: access tokens (further capped by the tenant's T); ``idle_ttl``: a refresh
    token unused this long expires; ``absolute_ttl``: a session ends this long after it
    opened, however often it refreshes; ``reuse_grace``: a refresh token used once may be
    presented again this long after, while its successor is unused, and gets a fresh successor
    instead of revoking the session (a retry after a lost response). 0 turns it off.
    """

    access_ttl: float = 15 * MINUTE
    idle_ttl: float = 14 * DAY
    absolute_ttl: float = 90 * DAY
    reuse_grace: float = 5.0

    def __post_init__(self) -> None:
        _positive("access_ttl", self.access_ttl)
        _positive("idle_ttl", self.idle_ttl)
        _positive("absolute_ttl", self.absolute_ttl)
        g = self.reuse_grace
        if isinstance(g, bool) or not isinstance(g, int | float) or not math.isfinite(g):
            raise InvalidInputError("reuse_grace must be a number of seconds")
        if not 0 <= g <= MAX_REUSE_GRACE:
            # A long grace is a window in which a stolen token is not detected.
            raise InvalidInputError(f"reuse_grace must be between 0 and {MAX_REUSE_GRACE:.0f}s")
        if self.idle_ttl > self.absolute_ttl:
            raise InvalidInputError("idle_ttl must not exceed absolute_ttl")

    def to_dict(self) -> dict[str, float]:
        return {
            "access_ttl": self.access_ttl,
            "idle_ttl": self.idle_ttl,
            "absolute_ttl": self.absolute_ttl,
            "reuse_grace": self.reuse_grace,
        }


@dataclass(frozen=True)
class OAuthClient:
    """One OAuth client of a tenant (never its secret, never the secret's digest)."""

    client_id: str
    tenant: str
    auth_method: AuthMethod
    grant_types: tuple[GrantType, ...]
    scope: tuple[str, ...]
    audience: str | None
    description: str | None
    created_at: float
    secret_rotated_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def confidential(self) -> bool:
        return self.auth_method != AuthMethod.NONE

    def allows(self, grant: GrantType) -> bool:
        return grant in self.grant_types

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "tenant": self.tenant,
            "token_endpoint_auth_method": self.auth_method.value,
            "grant_types": [g.value for g in self.grant_types],
            "scope": " ".join(self.scope),
            "audience": self.audience,
            "description": self.description,
            "created_at": self.created_at,
            "secret_rotated_at": self.secret_rotated_at,
            "revoked_at": self.revoked_at,
        }


def check_client_fields(
    auth_method: str,
    grant_types: list[str] | tuple[str, ...],
    scope: str | None,
    audience: str | None,
    description: str | None,
) -> tuple[AuthMethod, tuple[GrantType, ...], tuple[str, ...]]:
    """Validate a new client's fields; return them typed."""
    try:
        method = AuthMethod(auth_method)
    except ValueError:
        raise InvalidInputError(
            f"unknown token_endpoint_auth_method {auth_method!r}; use one of "
            + ", ".join(AUTH_METHODS)
        ) from None
    if not grant_types:
        raise InvalidInputError("give at least one grant type")
    grants: list[GrantType] = []
    for g in grant_types:
        try:
            grants.append(GrantType(g))
        except ValueError:
            raise InvalidInputError(
                f"unknown grant type {g!r}; use {' or '.join(GRANT_TYPES)}"
            ) from None
    if method == AuthMethod.NONE and GrantType.CLIENT_CREDENTIALS in grants:
        # RFC 6749 section 4.4: the client credentials grant is for confidential clients only.
        raise InvalidInputError("a public client (auth method none) cannot use client_credentials")
    if audience is not None and not 0 < len(audience) <= MAX_AUDIENCE:
        raise InvalidInputError(f"audience must be 1-{MAX_AUDIENCE} characters")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInputError(f"description longer than {MAX_DESCRIPTION} characters")
    return method, tuple(sorted(set(grants))), parse_scope(scope)


@dataclass(frozen=True)
class Session:
    """A refresh-token family: one login of one subject through one client."""

    session_id: str
    tenant: str
    client_id: str
    subject: str
    claims: dict[str, Any]
    created_at: float
    absolute_expires_at: float
    last_used_at: float | None
    generation: int
    revoked_at: float | None = None
    revoked_reason: str | None = None
    scope: tuple[str, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "tenant": self.tenant,
            "client_id": self.client_id,
            "subject": self.subject,
            "claims": self.claims,
            "scope": " ".join(self.scope),
            "created_at": self.created_at,
            "absolute_expires_at": self.absolute_expires_at,
            "last_used_at": self.last_used_at,
            "refreshes": self.generation - 1,
            "revoked_at": self.revoked_at,
            "revoked_reason": self.revoked_reason,
        }


@dataclass(frozen=True)
class RefreshTokenRecord:
    """One refresh token of a session, by digest: generation n is the n-th one issued."""

    token_hash: str
    generation: int
    issued_at: float
    idle_expires_at: float
    used_at: float | None = None


def check_subject(subject: str) -> str:
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidInputError(f"subject must be 1-{MAX_SUBJECT_LENGTH} characters")
    if any(ord(c) < 0x20 for c in subject):
        raise InvalidInputError("subject must not contain control characters")
    return subject


def check_session_claims(claims: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(claims, dict):
        raise InvalidInputError("claims must be a JSON object")
    bad = SESSION_RESERVED_CLAIMS & claims.keys()
    if bad:
        raise InvalidInputError(
            f"claims {sorted(bad)} are set by keyturn on every session token, not by the caller"
        )
    return claims


def check_reason(reason: str | None, default: str) -> str:
    reason = (reason or "").strip() or default
    if len(reason) > MAX_REASON:
        raise InvalidInputError(f"reason longer than {MAX_REASON} characters")
    return reason
