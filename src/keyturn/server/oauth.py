"""The OAuth 2.0 token endpoint (RFC 6749) and revocation endpoint (RFC 7009), bare ASGI.

``POST /oauth/token`` and ``/oauth/revoke`` for the default tenant, ``/t/{tenant}/oauth/...``
for the others. Bodies are ``application/x-www-form-urlencoded`` as the RFCs require (JSON is
refused with a clear ``invalid_request``), at most ``max_body`` bytes; every error is the
section 5.2 JSON ``{"error", "error_description"}`` with ``Cache-Control: no-store``, and
``invalid_client`` is a 401 with ``WWW-Authenticate: Basic``. A token request never yields a
500 for bad input: each refusal is a typed error mapped here. Outside a framework, like the
public documents, because this is the path every client refreshes through.
"""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import parse_qsl, unquote_plus

import anyio.to_thread
import orjson

from keyturn.errors import KeyturnError, StoreUnavailableError, TenantNotFoundError
from keyturn.server.public import ASGIApp, Receive, Scope, Send
from keyturn.sessions.errors import (
    InvalidClientError,
    InvalidRequestError,
    OAuthError,
    UnsupportedGrantTypeError,
)
from keyturn.sessions.model import GRANT_TYPES, AuthMethod, GrantType
from keyturn.sessions.service import ClientCredentials, SessionService

log = logging.getLogger("keyturn.server.oauth")

DEFAULT_MAX_BODY = 8 * 1024
MAX_FIELDS = 16
MAX_VALUE = 4096
MAX_AUTHORIZATION = 1024
FORM = "application/x-www-form-urlencoded"
BASIC_CHALLENGE = b'Basic realm="keyturn"'
_ENDPOINTS = {"oauth/token": "token", "oauth/revoke": "revoke"}
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]


def route(path: str, default_tenant: str) -> tuple[str, str] | None:
    """(tenant, "token" | "revoke") for an OAuth endpoint path, None for anything else."""
    if path.startswith("/oauth/"):
        kind = _ENDPOINTS.get(path[1:])
        return (default_tenant, kind) if kind is not None else None
    if path.startswith("/t/"):
        tenant, sep, rest = path[3:].partition("/")
        kind = _ENDPOINTS.get(rest)
        if sep and tenant and kind is not None:
            return tenant, kind
    return None


class _Reply:
    """A status, a JSON body and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


def _error(status: int, error: str, description: str, **headers: bytes) -> _Reply:
    body = orjson.dumps({"error": error, "error_description": description})
    return _Reply(status, body, [(k.replace("_", "-").encode(), v) for k, v in headers.items()])


def _oauth_error(exc: OAuthError) -> _Reply:
    if isinstance(exc, InvalidClientError):
        return _error(401, exc.code, exc.detail, www_authenticate=BASIC_CHALLENGE)
    return _error(exc.status, exc.code, exc.detail)


def parse_form(body: bytes) -> dict[str, str]:
    """The body's parameters; InvalidRequestError if malformed, repeated or too long."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the body is not UTF-8") from None
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise InvalidRequestError(
            f"the body is not a form of at most {MAX_FIELDS} parameters"
        ) from None
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:
            # RFC 6749 section 3.2: parameters MUST NOT be included more than once.
            raise InvalidRequestError(f"parameter {k!r} is repeated")
        if len(v) > MAX_VALUE:
            raise InvalidRequestError(f"parameter {k!r} longer than {MAX_VALUE} characters")
        form[k] = v
    return form


def client_credentials(authorization: str | None, form: dict[str, str]) -> ClientCredentials:
    """The client's credentials from ``Authorization: Basic`` or the body (RFC 6749 2.3.1)."""
    body_id = form.get("client_id")
    body_secret = form.get("client_secret")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClientError("client authentication failed: use HTTP Basic")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise InvalidClientError("client authentication failed: malformed Basic") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise InvalidClientError("client authentication failed: malformed Basic")
        # The id and secret are form-urlencoded before base64 (RFC 6749 section 2.3.1).
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if body_secret is not None:
            raise InvalidRequestError("use one client authentication method, not two")
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError("client_id in the body differs from the Basic one")
        return ClientCredentials(client_id, secret, AuthMethod.BASIC)
    if body_id is None or body_id == "":
        raise InvalidClientError("client authentication failed: no client credentials")
    if body_secret is not None:
        return ClientCredentials(body_id, body_secret, AuthMethod.POST)
    return ClientCredentials(body_id, None, AuthMethod.NONE)


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequestError(f"missing parameter {name}")
    return value


class OAuthApp:
    """Serves the token and revocation endpoints; everything else goes to ``fallback``."""

    def __init__(
        self,
        sessions: SessionService,
        fallback: ASGIApp,
        *,
        default_tenant: str = "default",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if max_body < 1:
            raise ValueError("max_body must be positive")
        self.sessions = sessions
        self.fallback = fallback
        self.default_tenant = default_tenant
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = route(scope["path"], self.default_tenant) if scope["type"] == "http" else None
        if hit is None:
            await self.fallback(scope, receive, send)
            return
        tenant, kind = hit
        reply = await self._answer(scope, receive, tenant, kind)
        headers = [*_HEADERS, *reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _answer(self, scope: Scope, receive: Receive, tenant: str, kind: str) -> _Reply:
        if scope["method"] != "POST":
            return _error(405, "invalid_request", "use POST", allow=b"POST")
        headers = {k.lower(): v for k, v in scope["headers"]}
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return self._too_large()
        body = await self._read(receive)
        if body is None:
            return self._too_large()
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        authorization = headers.get(b"authorization")
        if authorization is not None and len(authorization) > MAX_AUTHORIZATION:
            return _oauth_error(InvalidClientError("Authorization header too long"))
        try:
            if scope.get("query_string"):
                # Credentials in a URL end up in logs and histories: the body only.
                raise InvalidRequestError("send the parameters in the form body, not the URL")
            if ctype != FORM:
                hint = " (JSON is not accepted)" if ctype.endswith("json") else ""
                raise InvalidRequestError(f"the body must be {FORM} (RFC 6749 section 3.2){hint}")
            form = parse_form(body)
            auth = authorization.decode("latin-1") if authorization is not None else None
            fn = self._token if kind == "token" else self._revoke
            result: _Reply = await anyio.to_thread.run_sync(fn, tenant, auth, form)
            return result
        except OAuthError as exc:
            return _oauth_error(exc)
        except TenantNotFoundError:
            return _error(404, "invalid_request", "no such token endpoint")
        except StoreUnavailableError:
            return _error(
                503, "temporarily_unavailable", "the store is unavailable", retry_after=b"1"
            )
        except KeyturnError as exc:
            # The tenant cannot sign right now (e.g. no current key): our side, not the client's.
            log.error("oauth %s for %s refused: [%s] %s", kind, tenant, exc.code, exc.detail)
            return _error(
                503, "temporarily_unavailable", "cannot issue tokens now", retry_after=b"5"
            )
        except Exception as exc:
            # Never the exception text: it could quote a parameter.
            log.error("oauth %s for %s failed: %s", kind, tenant, type(exc).__name__)
            return _error(500, "server_error", "internal error")

    def _too_large(self) -> _Reply:
        reply = _error(413, "invalid_request", f"request body larger than {self.max_body} bytes")
        reply.headers.append((b"connection", b"close"))
        return reply

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    # --- the endpoints (worker thread) -----------------------------------------------------
    def _token(self, tenant: str, authorization: str | None, form: dict[str, str]) -> _Reply:
        grant = _required(form, "grant_type")
        if grant not in GRANT_TYPES:
            raise UnsupportedGrantTypeError(
                f"grant_type must be {' or '.join(GRANT_TYPES)}, not {grant[:64]!r}"
            )
        client = self.sessions.authenticate(tenant, client_credentials(authorization, form))
        if grant == GrantType.CLIENT_CREDENTIALS:
            res = self.sessions.client_credentials(tenant, client, form.get("scope"))
        else:
            token = _required(form, "refresh_token")
            res = self.sessions.refresh(tenant, client, token, form.get("scope"))
        return _Reply(200, orjson.dumps(res.to_dict()))

    def _revoke(self, tenant: str, authorization: str | None, form: dict[str, str]) -> _Reply:
        token = _required(form, "token")
        client = self.sessions.authenticate(tenant, client_credentials(authorization, form))
        self.sessions.revoke_token(tenant, client, token, form.get("token_type_hint"))
        # RFC 7009 section 2.2: 200 whether or not the token was known.
        return _Reply(200, b"{}")


__all__ = ["OAuthApp", "parse_form", "route"]
