"""RFC 9457 problem bodies, and the one table that maps keyturn errors to HTTP statuses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

import orjson

from keyturn import errors as E

PROBLEM_CONTENT_TYPE = "application/problem+json"

# One table, most specific class first: the first isinstance match wins. Anything not listed
# (a KeyturnError nobody expected at the HTTP layer) is a 500 with its stable code.
STATUS_BY_ERROR: tuple[tuple[type[E.KeyturnError], int], ...] = (
    (E.ForbiddenError, 403),
    (E.AuthError, 401),
    (E.NotFoundError, 404),
    (E.ConflictError, 409),
    (E.UnsafePolicyError, 422),
    (E.InvalidInputError, 422),  # includes TokenLifetimeError, InvalidKeyError, WeakKeyError
    (E.TokenError, 422),
    (E.StoreUnavailableError, 503),
    (E.KeyBackendError, 503),  # token absent, wrong PIN, object missing: nothing changed
    (E.ConfigError, 500),
)


def status_for(exc: E.KeyturnError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def problem(
    status: int,
    detail: str,
    code: str,
    *,
    title: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A problem document: ``type`` is about:blank, so ``title`` is the status phrase."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_for(exc: E.KeyturnError) -> tuple[int, dict[str, Any]]:
    status = status_for(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, E.UnsafePolicyError) and exc.violations:
        extra["violations"] = list(exc.violations)
    if isinstance(exc, E.TokenError):
        extra["action"] = exc.action
    if isinstance(exc, E.KeyCapError):
        extra["published"] = exc.published
        extra["cap"] = exc.cap
    return status, problem(status, exc.detail, exc.code, **extra)


def problem_bytes(status: int, detail: str, code: str) -> bytes:
    return orjson.dumps(problem(status, detail, code))


async def send_problem(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    status: int,
    body: dict[str, Any],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a bare ASGI request with a problem document (and any more ``headers``)."""
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
