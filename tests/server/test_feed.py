"""The revocation stream driven in-process through the ASGI interface (keepalive, close)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import orjson
import pytest

from keyturn.config import Settings
from keyturn.server.app import create_app
from keyturn.server.watch import PollingWatcher
from keyturn.service import KeyService
from tests.waiting import async_wait_until

pytestmark = pytest.mark.anyio


class Conn:
    """One fake HTTP connection: ``disconnect()`` ends it from the client side."""

    def __init__(self, path: str) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": path,
            "headers": [],
            "query_string": b"",
        }
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.sent.put(message)

    def disconnect(self) -> None:
        self._gone.set()

    async def next_body(self, within: float = 2.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            while True:
                msg = await self.sent.get()
                if msg["type"] == "http.response.body":
                    return msg

    async def next_event(self, within: float = 5.0) -> bytes:
        """The next body that is not a keepalive: a commit can take longer than the keepalive
        interval on a loaded machine (PostgreSQL in CI), and keepalives may come first."""
        with anyio.fail_after(within):
            while True:
                body: bytes = (await self.next_body(within))["body"]
                if body != b": keepalive\n\n":
                    return body


def _next_kid(service: KeyService) -> str:
    _, ring = service.ring("default")
    assert ring.next is not None
    return ring.next.kid


async def test_snapshot_push_keepalive_disconnect(
    ready_service: KeyService, settings: Settings
) -> None:
    app = create_app(settings, ready_service, watchers=[], keepalive=0.2)
    kid = _next_kid(ready_service)
    ready_service.revoke("default", kid, reason="before", actor="t")
    conn = Conn("/revocations/stream")
    task = asyncio.ensure_future(app(conn.scope, conn.receive, conn.send))
    start = await conn.sent.get()
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    snap = (await conn.next_body())["body"]
    assert snap.startswith(b"event: snapshot\ndata: ")
    assert [r["kid"] for r in orjson.loads(snap.split(b"data: ")[1])["revoked"]] == [kid]

    # A revocation committed in a worker thread (as the API does) is pushed once.
    kid2 = _next_kid(ready_service)
    await anyio.to_thread.run_sync(
        lambda: ready_service.revoke("default", kid2, reason="pushed", actor="t")
    )
    body = await conn.next_event()
    assert body.startswith(b"event: revoked\ndata: ")
    assert body.endswith(b"\n\n")
    event = orjson.loads(body.split(b"data: ")[1])
    assert event == {"kid": kid2, "revoked_at": event["revoked_at"], "reason": "pushed"}

    # A change that revokes nothing sends nothing but keepalives.
    ready_service.set_policy("default", actor="t", jwks_max_age=300.0)
    assert (await conn.next_body(within=1))["body"] == b": keepalive\n\n"

    conn.disconnect()
    with anyio.fail_after(2):
        await task
    assert app.hub.subscribers == 0


async def test_close_ends_every_stream(ready_service: KeyService, settings: Settings) -> None:
    app = create_app(settings, ready_service, watchers=[])
    conns = [Conn("/revocations/stream"), Conn("/t/default/revocations/stream")]
    tasks = [asyncio.ensure_future(app(c.scope, c.receive, c.send)) for c in conns]
    for c in conns:
        await c.next_body()  # snapshot
    assert app.hub.subscribers == 2
    await app.shutdown()
    for c in conns:
        # A planned end: the client is told to reconnect (to another replica), then the end.
        assert (await c.next_body())["body"] == b"event: reconnect\ndata: {}\n\n"
        last = await c.next_body()
        assert last == {"type": "http.response.body", "body": b"", "more_body": False}
    with anyio.fail_after(2):
        await asyncio.gather(*tasks)
    assert app.hub.subscribers == 0


async def test_no_new_stream_once_shutting_down(
    ready_service: KeyService, settings: Settings
) -> None:
    """After close, a new stream would end at once with "reconnect" and come straight back: it
    gets a 503 instead, which sends the client to its backoff or to another replica."""
    app = create_app(settings, ready_service, watchers=[])
    await app.shutdown()
    conn = Conn("/revocations/stream")
    with anyio.fail_after(2):
        await app(conn.scope, conn.receive, conn.send)
    start = await conn.sent.get()
    assert start["status"] == 503
    assert (b"retry-after", b"30") in start["headers"]
    assert orjson.loads((await conn.next_body())["body"])["code"] == "busy"


async def test_stream_ends_after_its_lifetime_with_a_reconnect_event(
    ready_service: KeyService, settings: Settings
) -> None:
    app = create_app(settings, ready_service, watchers=[], keepalive=0.1, stream_max_lifetime=0.5)
    conn = Conn("/revocations/stream")
    started = asyncio.get_running_loop().time()
    task = asyncio.ensure_future(app(conn.scope, conn.receive, conn.send))
    assert (await conn.next_body())["body"].startswith(b"event: snapshot")
    bodies = []
    while True:
        body = (await conn.next_body(within=2))["body"]
        if body == b"event: reconnect\ndata: {}\n\n":
            break
        bodies.append(body)
    lasted = asyncio.get_running_loop().time() - started
    assert lasted >= 0.45 - 0.01, lasted  # not before the lifetime (minus its 10% jitter)
    assert bodies and set(bodies) == {b": keepalive\n\n"}  # keepalives until then
    assert await conn.next_body() == {"type": "http.response.body", "body": b"", "more_body": False}
    with anyio.fail_after(2):
        await task
    assert app.hub.subscribers == 0


def test_stream_lifetime_must_be_positive(ready_service: KeyService, settings: Settings) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        create_app(settings, ready_service, watchers=[], stream_max_lifetime=0)


async def test_lifespan_starts_and_stops_watcher(
    ready_service: KeyService, settings: Settings
) -> None:
    app = create_app(settings, ready_service, poll_interval=0.05)
    watcher = app.watchers[0]
    assert isinstance(watcher, PollingWatcher)
    kinds = [type(w).__name__ for w in app.watchers]
    pg = ready_service.store.dialect == "postgresql"
    assert kinds == (["PollingWatcher", "ListenWatcher"] if pg else ["PollingWatcher"])
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []
    step = asyncio.Event()
    started = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages[0]["type"] == "lifespan.shutdown":
            await step.wait()
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        started.set()

    task = asyncio.ensure_future(app({"type": "lifespan"}, receive, send))
    with anyio.fail_after(5):
        await started.wait()
    assert sent[0]["type"] == "lifespan.startup.complete"
    assert app.started
    await async_wait_until(lambda: watcher.polls >= 2, what="two watcher polls")
    step.set()
    with anyio.fail_after(5):
        await task
    assert sent[-1]["type"] == "lifespan.shutdown.complete"
    assert not app.started


async def test_head_on_stream_returns_headers_only(
    ready_service: KeyService, settings: Settings
) -> None:
    import httpx

    app = create_app(settings, ready_service, watchers=[])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.head("/revocations/stream")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.content == b""


async def test_streams_beyond_the_cap_get_a_503_problem(
    ready_service: KeyService, settings: Settings
) -> None:
    """Streams need no credentials, so their number is capped (memory, file descriptors)."""
    app = create_app(settings, ready_service, watchers=[])
    app.hub.max_streams = 2
    conns = [Conn("/revocations/stream") for _ in range(2)]
    tasks = [asyncio.ensure_future(app(c.scope, c.receive, c.send)) for c in conns]
    for c in conns:
        await c.next_body()  # snapshot: both are streaming
    extra = Conn("/revocations/stream")
    with anyio.fail_after(2):
        await app(extra.scope, extra.receive, extra.send)
    start = await extra.sent.get()
    assert start["status"] == 503
    assert (b"retry-after", b"30") in start["headers"]
    assert orjson.loads((await extra.next_body())["body"])["code"] == "busy"
    assert app.hub.subscribers == 2
    for c in conns:
        c.disconnect()
    with anyio.fail_after(2):
        await asyncio.gather(*tasks)
    assert app.hub.subscribers == 0
