"""Server logs: text or JSON lines, a request id per API request, secrets redacted.

``log_config(fmt, level)`` is the ``logging.config.dictConfig`` document ``keyturn serve`` hands
to uvicorn, so uvicorn's own lines (errors, the access log) get the same format and filters.
Redaction is defence in depth: keyturn never logs keys, secrets or tokens on purpose, but an
exception message, a query string or a client's header could still carry one.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from keyturn.server.public import ASGIApp, Message, Receive, Scope, Send

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
REQUEST_ID_HEADER = "X-Request-ID"
REDACTED = "[REDACTED]"

#: The id of the API request being served, for log lines written while serving it.
request_id: ContextVar[str | None] = ContextVar("keyturn_request_id", default=None)

# An incoming id is kept only if it is short and plain: it ends up in every log line of the
# request, so no spaces, quotes or control characters (log injection), and nothing long.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Candidates for a JWS or JWE (compact form): three or more dot-separated base64url segments.
# From the first segment that decodes to a JSON object ("{", maybe after whitespace) and has
# two more after it, the rest is redacted: plain dotted names (hosts, loggers, event names like
# key.rotated) stay readable, and a token glued to a hostname is still caught.
_JWT = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,}")
# API key tokens, kt_<key id>_<secret>: the key id is not secret and says which key it was.
_API_KEY = re.compile(r"(?<![A-Za-z0-9])kt_(?:([0-9a-f]{8,64})_)?[A-Za-z0-9_-]{8,}")


def _jose_header(segment: str) -> bool:
    if len(segment) < 4:
        return False
    head = segment[: len(segment) // 4 * 4][:16]
    try:
        raw = base64.urlsafe_b64decode(head).lstrip(b" \t\r\n")
    except (binascii.Error, ValueError):
        return False
    # A JSON object's first member name: '{', then '"' or '}' (whitespace allowed between).
    return raw[:1] == b"{" and raw[1:].lstrip(b" \t\r\n")[:1] in (b'"', b"}", b"")


def _jwt_sub(m: re.Match[str]) -> str:
    parts = m.group(0).split(".")
    for i in range(len(parts) - 2):
        if _jose_header(parts[i]):
            return ".".join([*parts[:i], REDACTED])
    return m.group(0)


def _api_key_sub(m: re.Match[str]) -> str:
    key_id = m.group(1)
    return f"kt_{key_id}_{REDACTED}" if key_id else REDACTED


def redact(text: str) -> str:
    """``text`` with anything shaped like a JWT (JWS or JWE) or a keyturn API key replaced."""
    if "." in text:
        text = _JWT.sub(_jwt_sub, text)
    if "kt_" in text:
        text = _API_KEY.sub(_api_key_sub, text)
    return text


def is_safe_request_id(value: str) -> bool:
    """A short plain token that is not itself a secret (a client may send anything)."""
    return _SAFE_ID.fullmatch(value) is not None and redact(value) == value


def new_request_id() -> str:
    return secrets.token_hex(8)


class RedactFilter(logging.Filter):
    """Rewrites a record's message, exception and stack text through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as logging does
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` from the request being served (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            out["request_id"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out).decode()


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; the id part only inside a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid is not None else ""
        return super().format(record)


def log_config(fmt: LogFormat = "text", level: str = "info") -> dict[str, Any]:
    """The dictConfig for ``keyturn serve``: one stderr handler for keyturn and uvicorn."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "keyturn.server.logs.RequestIdFilter"},
            "redact": {"()": "keyturn.server.logs.RedactFilter"},
        },
        "formatters": {
            "text": {"()": "keyturn.server.logs.TextFormatter"},
            "json": {"()": "keyturn.server.logs.JsonFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": fmt,
                # The filters sit on the handler, so every logger that reaches it is covered.
                "filters": ["request_id", "redact"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "level": lvl, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": lvl, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": lvl, "propagate": True},
        },
        "root": {"handlers": ["default"], "level": lvl},
    }


class RequestId:
    """ASGI middleware: a request id for each request (a safe ``X-Request-ID`` or a new one).

    The id is set for log lines written while serving the request and echoed in the response's
    ``X-Request-ID`` header. Sits in front of the API only: the public hot path has none.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                rid = given if is_safe_request_id(given) else None
                break
        rid = rid or new_request_id()
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id.set(rid)
        await self.app(scope, receive, send_with_id)
        # Reset only on success: an exception propagates to the server, which logs it in this
        # same task (uvicorn gives each request its own), so the id stays on that log line.
        request_id.reset(token)


__all__ = [
    "LOG_FORMATS",
    "REDACTED",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "LogFormat",
    "RedactFilter",
    "RequestId",
    "RequestIdFilter",
    "TextFormatter",
    "is_safe_request_id",
    "log_config",
    "new_request_id",
    "redact",
    "request_id",
]
