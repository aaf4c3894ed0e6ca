"""The sessions feature's errors, defined in :mod:`keyturn.errors` with every other (one tree);
re-exported here for the sessions code and its callers."""

from __future__ import annotations

from keyturn.errors import (
    ClientNotFoundError,
    ClientRevokedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuthError,
    SessionNotFoundError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedTokenTypeError,
)

__all__ = [
    "ClientNotFoundError",
    "ClientRevokedError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "OAuthError",
    "SessionNotFoundError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UnsupportedTokenTypeError",
]
