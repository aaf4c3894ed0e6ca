"""WSGI middleware that verifies bearer tokens (works with Flask and any WSGI app)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from keyturn.errors import TokenError
from keyturn.verifier._bearer import (
    CLAIMS_ENVIRON_KEY,
    Denial,
    bearer_token,
    malformed_request,
    missing_token,
    path_excluded,
    token_denied,
)
from keyturn.verifier._verifier import Verifier

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on every request; claims in ``environ["keyturn.claims"]``.

    Flask: ``app.wsgi_app = BearerAuthMiddleware(app.wsgi_app, verifier=verifier)`` and read
    ``request.environ["keyturn.claims"]`` (or ``get_claims(request.environ)``). Responses for
    missing or bad tokens are as in ``keyturn.verifier.asgi.BearerAuthMiddleware`` (the 401
    challenge carries ``keyturn_action``, e.g. ``try_refresh``, for ``keyturn.client``).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        verifier: Verifier,
        exclude: Collection[str] = (),
        realm: str | None = None,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("BearerAuthMiddleware needs a Verifier")
        self.app = app
        self.verifier = verifier
        self.exclude = tuple(exclude)
        self.realm = realm

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if path_excluded(environ.get("PATH_INFO", ""), self.exclude):
            return self.app(environ, start_response)
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return _deny(start_response, missing_token(self.realm))
        if not token:
            return _deny(start_response, malformed_request(self.realm))
        try:
            claims = self.verifier.verify(token)
        except TokenError as exc:
            return _deny(start_response, token_denied(exc, self.realm))
        environ[CLAIMS_ENVIRON_KEY] = claims
        return self.app(environ, start_response)


_REASONS = {400: "400 Bad Request", 401: "401 Unauthorized", 503: "503 Service Unavailable"}


def _deny(start_response: StartResponse, denial: Denial) -> list[bytes]:
    headers = [*denial.headers, ("content-length", str(len(denial.body)))]
    start_response(_REASONS.get(denial.status, f"{denial.status} Error"), headers)
    return [denial.body]


def get_claims(environ: Environ) -> dict[str, Any]:
    """The verified claims; ``LookupError`` if the middleware did not run for this request."""
    try:
        claims: dict[str, Any] = environ[CLAIMS_ENVIRON_KEY]
    except KeyError:
        raise LookupError("no verified claims: is BearerAuthMiddleware installed here?") from None
    return claims
