"""Request guards of the management API: JSON bodies only (415), and method errors that name
the methods a path allows (405 with the right ``Allow``, before a parameter route answers)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyturn.server.problems import PROBLEM_CONTENT_TYPE, problem
from keyturn.server.public import ASGIApp, Message, Receive, Scope, Send

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def is_json_media_type(value: bytes) -> bool:
    """``application/json`` or any ``+json`` type, parameters (charset) ignored."""
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class NoStore:
    """ASGI: every response under ``prefix`` says ``Cache-Control: no-store`` unless it set its
    own. The management API returns secrets shown once (API keys, OAuth client secrets) and
    tokens (signed JWTs, refresh tokens): no proxy or client cache may keep them."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_no_store)


class JsonOnly:
    """ASGI: a body sent to ``prefix`` without a JSON content type gets a 415 problem, so
    ``curl -d '{...}'`` (form-encoded by default) is told what to send instead of a dump of
    validation errors. Requests without a body pass."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"].startswith(self.prefix)
        ):
            headers = dict(scope["headers"])
            has_body = headers.get(b"content-length", b"0").strip() not in (b"0", b"") or (
                b"transfer-encoding" in headers
            )
            ctype = headers.get(b"content-type")
            if has_body and (ctype is None or not is_json_media_type(ctype)):
                await _unsupported(send, ctype)
                return
        await self.app(scope, receive, send)


async def _unsupported(send: Send, ctype: bytes | None) -> None:
    got = "no Content-Type" if ctype is None else "Content-Type " + ctype[:100].decode("latin-1")
    body = orjson.dumps(
        problem(
            415,
            f"the body must be JSON: send Content-Type: application/json (got {got})",
            "unsupported_media_type",
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 415,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"accept", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def add_method_errors(router: APIRouter) -> None:
    """For every path whose last segment is literal (``.../keys/rotate``, ``.../policy``), a
    405 for the methods it does not allow, naming the ones it does, placed before every route:
    otherwise ``GET .../keys/rotate`` reaches ``GET .../keys/{kid}`` (404 ``key_not_found``)
    and a method error takes its ``Allow`` from whichever route matched first."""
    allowed: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.path.rstrip("/").endswith("}"):
            allowed.setdefault(route.path, set()).update(route.methods or ())
    guards = APIRouter()
    for path, methods in allowed.items():
        if "GET" in methods:
            methods.add("HEAD")
        others = [m for m in _METHODS if m not in methods]
        if not others:
            continue
        allow = ", ".join(m for m in _METHODS if m in methods)

        def refuse(_allow: str = allow) -> None:
            raise StarletteHTTPException(
                405, f"method not allowed here; allowed: {_allow}", headers={"Allow": _allow}
            )

        guards.add_api_route(
            path, refuse, methods=others, include_in_schema=False, response_model=None
        )
    router.routes[:0] = guards.routes
