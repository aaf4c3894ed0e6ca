"""Request guards of the management API: a bounded body (413), JSON bodies only (415), and
method errors that name the methods a path allows (405 with the right ``Allow``, before a
parameter route answers).

The 413 and 415 answers are functions (:func:`send_too_large`, :func:`send_unsupported`) as
well as middleware, so the sign routes' fast path (``keyturn.server.signfast``), which does
the same checks in its own single pass over the headers, answers with the same bytes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyturn.server.problems import problem, send_problem
from keyturn.server.public import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LIMITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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
            ctype = headers.get(b"content-type")
            body = has_body(headers.get(b"content-length"), b"transfer-encoding" in headers)
            if body and (ctype is None or not is_json_media_type(ctype)):
                await send_unsupported(send, ctype)
                return
        await self.app(scope, receive, send)


def has_body(content_length: bytes | None, chunked: bool) -> bool:
    """Whether a request carries a body, from its (last) Content-Length and Transfer-Encoding."""
    return chunked or (content_length or b"0").strip() not in (b"0", b"")


async def send_unsupported(
    send: Send, ctype: bytes | None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """The 415 problem: the body must be JSON (``extra``: more response headers)."""
    got = "no Content-Type" if ctype is None else "Content-Type " + ctype[:100].decode("latin-1")
    detail = f"the body must be JSON: send Content-Type: application/json (got {got})"
    await send_problem(
        send,
        415,
        problem(415, detail, "unsupported_media_type"),
        [(b"accept", b"application/json"), *(extra or ())],
    )


async def send_too_large(
    send: Send, max_bytes: int, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """The 413 problem; the connection is closed (the rest of the body is never read)."""
    detail = f"request body larger than {max_bytes} bytes"
    await send_problem(
        send,
        413,
        problem(413, detail, "body_too_large"),
        [(b"connection", b"close"), *(extra or ())],
    )


def declared_too_large(value: bytes, max_bytes: int) -> bool:
    """A Content-Length header over ``max_bytes`` (an unparsable one is left to the server)."""
    try:
        return int(value) > max_bytes
    except ValueError:
        return False


async def read_bounded(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body (chunked too), or None once it passes ``max_bytes``. A
    disconnect ends the body early (what arrived is returned)."""
    message = await receive()
    if message["type"] == "http.request":
        first: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return first if len(first) <= max_bytes else None
    else:
        return b""
    chunks = [first]
    size = len(first)
    while size <= max_bytes and message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks) if size <= max_bytes else None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the connection sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return again


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413 problem, unread."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _LIMITED_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and declared_too_large(value, self.max_bytes):
                await send_too_large(send, self.max_bytes)
                return
        # Bodies are small by design: read the whole body here (chunked ones too), then replay.
        body = await read_bounded(receive, self.max_bytes)
        if body is None:
            await send_too_large(send, self.max_bytes)
            return
        await self.app(scope, replay(body, receive), send)


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
