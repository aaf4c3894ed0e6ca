"""Server logs: JSON lines, request ids (in-process and from a real `keyturn serve`), redaction."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import httpx
import pytest

from keyturn.errors import StoreUnavailableError
from keyturn.server.logs import (
    REDACTED,
    JsonFormatter,
    RedactFilter,
    RequestId,
    RequestIdFilter,
    TextFormatter,
    is_safe_request_id,
    log_config,
    redact,
)
from keyturn.server.public import Receive, Scope, Send
from keyturn.service import KeyService

from .conftest import PUBLIC_URL
from .live import LiveServer

API = "/api/v1"
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9"
    ".eyJzdWIiOiJ1c2VyIiwiaXNzIjoiaHR0cHM6Ly9rZXlzLmV4YW1wbGUudGVzdCJ9"
    ".c2lnbmF0dXJlLWJ5dGVzLW5vdC1yZWFs"
)
API_KEY = "kt_0123456789abcdef_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of the ``keyturn`` loggers, through keyturn's own formatter and filters."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("keyturn")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- redaction -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"token {JWT} refused", f"token {REDACTED} refused", id="jws"),
        pytest.param(f"{JWT}.part4.part5", REDACTED, id="jwe-five-segments"),
        pytest.param(
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", REDACTED, id="unsigned-empty-signature"
        ),
        pytest.param(
            f"GET /cb?id_token={JWT}&x=1", f"GET /cb?id_token={REDACTED}&x=1", id="query-string"
        ),
        pytest.param(f"host.example.{JWT}", f"host.example.{REDACTED}", id="glued-to-a-name"),
        pytest.param(
            f"Authorization: Bearer {API_KEY}",
            f"Authorization: Bearer kt_0123456789abcdef_{REDACTED}",
            id="api-key-keeps-key-id",
        ),
        pytest.param("kt_notreallyakeybutsecret", REDACTED, id="api-key-malformed"),
        pytest.param("keys.example.test key.rotated", "keys.example.test key.rotated", id="names"),
        pytest.param("eyes.example.com", "eyes.example.com", id="ey-hostname"),
        pytest.param("10.0.0.1 keyturn.server.app", "10.0.0.1 keyturn.server.app", id="dotted"),
        pytest.param("an API key: kt_<key id>_<secret>", None, id="docs-placeholder"),
    ],
)
def test_redact(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_redact_a_real_token(ready_service: KeyService) -> None:
    token, _ = ready_service.sign("default", {"sub": "alice"})
    assert redact(f"bad token: {token}") == f"bad token: {REDACTED}"


def test_filter_redacts_messages_args_and_exceptions(captured: io.StringIO) -> None:
    log = logging.getLogger("keyturn.test")
    log.info("verify failed for %s with key %s", JWT, API_KEY)
    log.warning(f"plain message with {JWT}")
    try:
        raise ValueError(f"cannot parse {JWT} for {API_KEY}")
    except ValueError:
        log.exception("parse error")
    text = captured.getvalue()
    assert JWT not in text
    assert API_KEY not in text
    assert "Zm9vYmFyYmF6" not in text  # not even part of the secret
    first, second, third = lines(captured)
    assert (
        first["message"] == f"verify failed for {REDACTED} with key kt_0123456789abcdef_{REDACTED}"
    )
    assert second["message"] == f"plain message with {REDACTED}"
    assert third["message"] == "parse error"
    assert "ValueError: cannot parse [REDACTED]" in str(third["exception"])


def test_json_lines_fields(captured: io.StringIO) -> None:
    logging.getLogger("keyturn.test").warning("hello %s", "world")
    (line,) = lines(captured)
    assert set(line) == {"time", "level", "logger", "message"}  # no request: no request_id
    assert line["level"] == "WARNING"
    assert line["logger"] == "keyturn.test"
    assert line["message"] == "hello world"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))


def test_text_format_shows_the_request_id_inside_requests() -> None:
    from keyturn.server.logs import request_id

    record = logging.LogRecord("keyturn.x", logging.INFO, __file__, 1, "msg", None, None)
    RequestIdFilter().filter(record)
    assert TextFormatter().format(record).endswith(" INFO keyturn.x msg")
    token = request_id.set("abc")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    assert TextFormatter().format(record).endswith(" INFO keyturn.x [abc] msg")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_config_is_a_valid_dictconfig(fmt: str) -> None:
    cfg = log_config(fmt, "warning")  # type: ignore[arg-type]
    assert cfg["root"]["level"] == "WARNING"
    assert cfg["handlers"]["default"]["formatter"] == fmt
    assert cfg["handlers"]["default"]["filters"] == ["request_id", "redact"]
    # Build it without installing it (the test process's logging stays as pytest set it).
    configurator = logging.config.DictConfigurator(cfg)
    for section in ("filters", "formatters"):
        for spec in cfg[section].values():
            obj = configurator.configure_custom(dict(spec))
            assert isinstance(obj, logging.Filter | logging.Formatter)
    with pytest.raises(ValueError, match="log format"):
        log_config("xml")  # type: ignore[arg-type]


# --- request ids ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "safe"),
    [
        pytest.param("abc-123", True, id="plain"),
        pytest.param("5f0c2d1e-6b2a-4c1e-9a0b-1c2d3e4f5a6b", True, id="uuid"),
        pytest.param("a" * 65, False, id="too-long"),
        pytest.param("has space", False, id="space"),
        pytest.param('quote"d', False, id="quote"),
        pytest.param("line\nbreak", False, id="newline"),
        pytest.param("", False, id="empty"),
        pytest.param("kt_0123456789abcdef_secretsecret", False, id="an-api-key"),
        pytest.param("eyJhbGciOiJub25lIn0.e30.", False, id="a-jwt"),
    ],
)
def test_safe_request_id(value: str, safe: bool) -> None:
    assert is_safe_request_id(value) is safe


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("req-42", True, id="honoured"),
        pytest.param("bad id", False, id="unsafe-replaced"),
        pytest.param(None, False, id="generated"),
    ],
)
async def test_api_requests_get_a_request_id(
    client: httpx.AsyncClient, admin: dict[str, str], sent: str | None, kept: bool
) -> None:
    headers = dict(admin)
    if sent is not None:
        headers["X-Request-ID"] = sent
    r = await client.get(f"{API}/tenants", headers=headers)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    if kept:
        assert rid == sent
    else:
        assert GENERATED_ID.fullmatch(rid)
    # Errors and health checks too; the public hot path has none.
    assert "x-request-id" in (await client.get(f"{API}/tenants")).headers
    assert "x-request-id" in (await client.get("/healthz")).headers
    assert "x-request-id" not in (await client.get("/.well-known/jwks.json")).headers


@pytest.mark.anyio
async def test_log_lines_written_during_a_request_carry_its_id(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    ready_service: KeyService,
    captured: io.StringIO,
) -> None:
    def down(_stmt: str) -> None:
        raise StoreUnavailableError("test: database down")

    ready_service.store.fault_hook = down
    try:
        r = await client.get(
            f"{API}/tenants/default", headers={**admin, "X-Request-ID": "trace-me-1"}
        )
    finally:
        ready_service.store.fault_hook = None
    assert r.status_code == 503
    assert r.headers["x-request-id"] == "trace-me-1"
    errors = [line for line in lines(captured) if line["level"] == "ERROR"]
    assert errors
    assert all(line["request_id"] == "trace-me-1" for line in errors)


@pytest.mark.anyio
async def test_request_id_reaches_worker_threads(captured: io.StringIO) -> None:
    """Sync FastAPI handlers run in a thread pool: the id must follow them there."""
    log = logging.getLogger("keyturn.test")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.to_thread.run_sync(log.info, "in a worker thread")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=RequestId(app))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        r = await c.get("/x", headers={"X-Request-ID": "thread-1"})
    assert r.headers["x-request-id"] == "thread-1"
    (line,) = lines(captured)
    assert line["request_id"] == "thread-1"


# --- a real `keyturn serve --log-format json` ----------------------------------------------
@pytest.mark.slow
def test_serve_json_logs_with_request_ids_and_no_secrets(tmp_path: Path) -> None:
    server = LiveServer.start(tmp_path, "--log-format", "json", "--access-log")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            r = c.post(
                f"{API}/tenants/default/tokens/sign", headers=server.admin, json={"claims": {}}
            )
            token = r.json()["token"]
            r = c.post(
                f"{API}/tenants/default/tokens/verify",
                headers={**server.admin, "X-Request-ID": "live-req-1"},
                json={"token": token},
            )
            assert r.headers["x-request-id"] == "live-req-1"
            # A token in a query string reaches uvicorn's access log: redacted there.
            c.get(f"/nothing-here?id_token={token}")
            assert c.get("/.well-known/jwks.json").status_code == 200
    finally:
        server.stop()
    text = (tmp_path / "serve.log").read_text()
    parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert parsed, text
    for line in parsed:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert token not in text
    assert server.token not in text
    access = [p for p in parsed if p["logger"] == "uvicorn.access"]
    verify = [p for p in access if "/tokens/verify" in str(p["message"])]
    assert verify
    assert verify[0]["request_id"] == "live-req-1"
    assert any(REDACTED in str(p["message"]) for p in access)
    jwks = [p for p in access if "jwks.json" in str(p["message"])]
    assert jwks
    assert "request_id" not in jwks[0]
