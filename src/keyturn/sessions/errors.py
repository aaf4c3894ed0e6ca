"""Session errors: RFC 6749 section 5.2 errors for the token endpoint, and management errors.

Tree (all under :class:`keyturn.errors.KeyturnError`)::

    OAuthError                      (``error`` is the RFC 6749 / RFC 7009 code)
    ├── InvalidRequestError         invalid_request         400
    ├── InvalidClientError          invalid_client          401 + WWW-Authenticate
    ├── InvalidGrantError           invalid_grant           400
    ├── UnauthorizedClientError     unauthorized_client     400
    ├── UnsupportedGrantTypeError   unsupported_grant_type  400
    ├── InvalidScopeError           invalid_scope           400
    └── UnsupportedTokenTypeError   unsupported_token_type  400
    ClientNotFoundError (NotFoundError)     oauth_client_not_found
    SessionNotFoundError (NotFoundError)    session_not_found
    ClientRevokedError (ConflictError)      oauth_client_revoked
"""

from __future__ import annotations

from typing import ClassVar

from keyturn.errors import ConflictError, KeyturnError, NotFoundError


class OAuthError(KeyturnError):
    """An error of the token or revocation endpoint; ``code`` is the RFC ``error`` value."""

    code = "invalid_request"
    status: ClassVar[int] = 400


class InvalidRequestError(OAuthError):
    code = "invalid_request"


class InvalidClientError(OAuthError):
    code = "invalid_client"
    status = 401


class InvalidGrantError(OAuthError):
    code = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    code = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    code = "unsupported_grant_type"


class InvalidScopeError(OAuthError):
    code = "invalid_scope"


class UnsupportedTokenTypeError(OAuthError):
    code = "unsupported_token_type"


class ClientNotFoundError(NotFoundError):
    code = "oauth_client_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class ClientRevokedError(ConflictError):
    code = "oauth_client_revoked"
