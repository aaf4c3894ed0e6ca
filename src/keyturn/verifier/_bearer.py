"""Shared by the ASGI and WSGI middleware: bearer extraction and RFC 6750 error responses."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import orjson

from keyturn.errors import JWKSUnavailableError, TokenError

CLAIMS_STATE_KEY = "keyturn_claims"
CLAIMS_ENVIRON_KEY = "keyturn.claims"
# RFC 6750 section 3: error_description is limited to these characters.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True, slots=True)
class Denial:
    """An HTTP answer to a request without a valid token."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; ``None`` if absent or another scheme.

    ``""`` means the Bearer scheme with no token (a malformed request).
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def path_excluded(path: str, exclude: Collection[str]) -> bool:
    """Exact match, or prefix match for entries ending in ``/`` or ``*``."""
    for rule in exclude:
        if rule.endswith("*"):
            if path.startswith(rule[:-1]):
                return True
        elif rule.endswith("/") and len(rule) > 1:
            if path.startswith(rule):
                return True
        elif path == rule:
            return True
    return False


def _problem(status: int, title: str, code: str, detail: str, action: str | None) -> bytes:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if action is not None:
        body["action"] = action
    return orjson.dumps(body)


def _headers(challenge: str) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/problem+json"),
        ("www-authenticate", challenge),
        ("cache-control", "no-store"),
    ]


def _quote(text: str, limit: int = 200) -> str:
    return _UNSAFE.sub("?", text)[:limit]


def missing_token(realm: str | None) -> Denial:
    """No credentials: a bare challenge, no error code (RFC 6750 section 3.1)."""
    challenge = f'Bearer realm="{_quote(realm)}"' if realm else "Bearer"
    body = _problem(401, "Unauthorized", "token_missing", "a bearer token is required", None)
    return Denial(401, _headers(challenge), body)


def malformed_request(realm: str | None) -> Denial:
    prefix = f'Bearer realm="{_quote(realm)}", ' if realm else "Bearer "
    challenge = prefix + 'error="invalid_request", error_description="empty bearer token"'
    body = _problem(400, "Bad Request", "invalid_request", "empty bearer token", None)
    return Denial(400, _headers(challenge), body)


def token_denied(exc: TokenError, realm: str | None) -> Denial:
    """401 ``invalid_token`` for a bad token; 503 when the key set itself is unavailable."""
    prefix = f'Bearer realm="{_quote(realm)}", ' if realm else "Bearer "
    if isinstance(exc, JWKSUnavailableError):
        # Our failure, not the client's: 503 so clients retry instead of discarding the token.
        body = _problem(503, "Service Unavailable", exc.code, "cannot verify tokens now", "retry")
        headers = [("content-type", "application/problem+json"), ("retry-after", "5")]
        return Denial(503, headers, body)
    # RFC 6750 section 3 allows further auth-params: keyturn_action tells a client without
    # parsing the body whether a refresh can help (try_refresh, refresh) or not (reject).
    challenge = (
        prefix
        + f'error="invalid_token", error_description="{_quote(exc.detail)}", '
        + f'keyturn_action="{exc.action}", keyturn_code="{_quote(exc.code, 64)}"'
    )
    body = _problem(401, "Unauthorized", exc.code, exc.detail, exc.action)
    return Denial(401, _headers(challenge), body)
