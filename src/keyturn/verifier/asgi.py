"""Plain ASGI middleware that verifies bearer tokens (works with Starlette and FastAPI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from keyturn.errors import TokenError
from keyturn.verifier._bearer import (
    CLAIMS_STATE_KEY,
    Denial,
    bearer_token,
    malformed_request,
    missing_token,
    path_excluded,
    token_denied,
)
from keyturn.verifier._verifier import AsyncVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on every HTTP and WebSocket request.

    Verified claims go to ``scope["state"]["keyturn_claims"]`` (in Starlette and FastAPI:
    ``request.state.keyturn_claims``; or use ``get_claims`` / ``claims_dependency``). A missing
    token gets 401 with a bare ``WWW-Authenticate: Bearer``; a bad one 401 with
    ``error="invalid_token"``, ``keyturn_action`` (``try_refresh``, ``refresh`` or
    ``reject``: what ``keyturn.client`` reads) and ``keyturn_code``, and a problem+json body
    carrying the error ``code``; an unavailable key set 503. WebSocket handshakes are closed with code 1008 instead.
    ``exclude`` lists paths left unauthenticated: exact, or prefixes ending in ``/`` or ``*``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: AsyncVerifier,
        exclude: Collection[str] = (),
        realm: str | None = None,
    ) -> None:
        if not isinstance(verifier, AsyncVerifier):
            raise TypeError("BearerAuthMiddleware needs an AsyncVerifier")
        self.app = app
        self.verifier = verifier
        self.exclude = tuple(exclude)
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or path_excluded(
            scope.get("path", ""), self.exclude
        ):
            await self.app(scope, receive, send)
            return
        token = bearer_token(_header(scope, b"authorization"))
        if token is None:
            await self._deny(scope, send, missing_token(self.realm))
            return
        if not token:
            await self._deny(scope, send, malformed_request(self.realm))
            return
        try:
            claims = await self.verifier.verify(token)
        except TokenError as exc:
            await self._deny(scope, send, token_denied(exc, self.realm))
            return
        scope.setdefault("state", {})[CLAIMS_STATE_KEY] = claims
        await self.app(scope, receive, send)

    async def _deny(self, scope: Scope, send: Send, denial: Denial) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in denial.headers]
        headers.append((b"content-length", str(len(denial.body)).encode()))
        await send({"type": "http.response.start", "status": denial.status, "headers": headers})
        await send({"type": "http.response.body", "body": denial.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def get_claims(request_or_scope: object) -> dict[str, Any]:
    """The claims the middleware verified, from a Starlette ``Request`` or an ASGI scope.

    Raises ``LookupError`` if the middleware did not run for this request (e.g. an excluded
    path): a handler that needs claims must not silently get none.
    """
    scope: Any = getattr(request_or_scope, "scope", request_or_scope)
    try:
        claims: dict[str, Any] = scope["state"][CLAIMS_STATE_KEY]
    except (KeyError, TypeError):
        raise LookupError("no verified claims: is BearerAuthMiddleware installed here?") from None
    return claims


def claims_dependency() -> Callable[..., dict[str, Any]]:
    """A FastAPI dependency returning the verified claims: ``Depends(claims_dependency())``.

    Built on call so that importing this module never imports Starlette.
    """
    from starlette.requests import Request

    def keyturn_claims(request: Request) -> dict[str, Any]:
        return get_claims(request)

    # FastAPI reads the annotation to inject the request; give it the class, not a string.
    keyturn_claims.__annotations__["request"] = Request
    return keyturn_claims
