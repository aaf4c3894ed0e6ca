"""The revocation feed client: polling with ETag, and Server-Sent Events pushed over a real socket."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from keyturn.clock import FakeClock
from keyturn.errors import ConfigError, RevokedKidError
from keyturn.verifier import (
    AsyncVerifier,
    Backoff,
    CacheOptions,
    RevocationFeed,
    Verifier,
    VerifierEvent,
)
from keyturn.verifier._feed import FeedError, sse_events

from .conftest import ISSUER, JWKS_URL, FakeIssuer, LocalServer, _Handler

MakeVerifier = Callable[..., Verifier]


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.005)
    return time.monotonic() - started


def _revoked_doc(kids: list[str], issuer: str = ISSUER) -> bytes:
    return orjson.dumps(
        {
            "issuer": issuer,
            "revoked": [{"kid": k, "revoked_at": 1732000000, "reason": "leak"} for k in kids],
        }
    )


class PollFeed:
    """``revocations.json`` on the fake issuer, with ETag and 304."""

    def __init__(self, issuer: FakeIssuer, url: str = ISSUER + "/revocations.json") -> None:
        self.kids: list[str] = []
        self.doc_issuer = ISSUER
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        issuer.routes[url] = self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = _revoked_doc(self.kids, self.doc_issuer)
        etag = f'"{len(self.kids)}"'
        status = 304 if request.headers.get("if-none-match") == etag else 200
        self.statuses.append(status)
        return httpx.Response(
            status, content=b"" if status == 304 else body, headers={"etag": etag}
        )


def test_polling_feed_drops_a_revoked_kid_and_uses_etag(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    feed = PollFeed(issuer)
    verifier = make_verifier(revocations=RevocationFeed(mode="poll", poll_interval=0.02))
    verifier.verify(issuer.token(kid))
    _until(lambda: len(feed.requests) >= 3)
    assert 304 in feed.statuses
    assert feed.requests[-1].headers["if-none-match"] == '"0"'

    feed.kids.append(kid)
    _until(lambda: kid in verifier.cache.revoked)
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(kid))
    verifier.reload()  # the JWKS still lists it: revoked stays revoked
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(kid))


def test_discovery_feed_uri_is_preferred(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    kid = issuer.add_key()
    custom = ISSUER + "/feeds/revoked.json"
    issuer.extra_discovery = {"keyturn_revocations_uri": custom}
    feed = PollFeed(issuer, custom)
    feed.kids.append(kid)
    verifier = make_verifier(revocations=RevocationFeed(mode="poll", poll_interval=0.02))
    verifier.start()
    _until(lambda: kid in verifier.cache.revoked)
    assert str(feed.requests[0].url) == custom


def test_feed_for_another_issuer_is_ignored(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    feed = PollFeed(issuer)
    feed.kids.append(kid)
    feed.doc_issuer = "https://other.example"
    events: list[VerifierEvent] = []
    verifier = make_verifier(
        revocations=RevocationFeed(
            mode="poll", poll_interval=0.02, reconnect=Backoff(initial=0.02, jitter=0)
        ),
        on_event=events.append,
    )
    verifier.start()
    _until(lambda: len(feed.requests) >= 2)
    assert kid not in verifier.cache.revoked
    assert any(e.name == "feed_error" and "other.example" in str(e.data) for e in events)


def test_feed_needs_somewhere_to_connect() -> None:
    with pytest.raises(ConfigError):
        Verifier(algorithms=["ES256"], jwks_url=JWKS_URL, revocations=RevocationFeed())
    with pytest.raises(ConfigError):
        Verifier(
            algorithms=["ES256"],
            jwks_url=JWKS_URL,
            revocations=RevocationFeed(url="http://feed.example/x"),  # plain HTTP off loopback
        )


def test_async_verifier_polls_the_feed(issuer: FakeIssuer, clock: FakeClock) -> None:
    kid = issuer.add_key()
    feed = PollFeed(issuer)

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            clock=clock,
            cache=CacheOptions(background=False),
            revocations=RevocationFeed(mode="poll", poll_interval=0.02),
        ) as verifier:
            await verifier.verify(issuer.token(kid))
            feed.kids.append(kid)
            for _ in range(250):
                if kid in verifier.cache.revoked:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(RevokedKidError):
                await verifier.verify(issuer.token(kid))

    asyncio.run(main())


# -- Server-Sent Events over a real socket ---------------------------------------------------


class StreamFeed:
    """``/feed/stream`` on a LocalServer: a snapshot, then pushes; optionally drops a connection."""

    def __init__(
        self,
        server: LocalServer,
        snapshot: list[str],
        drop_first: bool = False,
        reconnect_first: float | None = None,
    ) -> None:
        self.server = server
        self.snapshot = snapshot
        self.drop_first = drop_first
        self.reconnect_first = reconnect_first
        self.pushes: queue.Queue[str] = queue.Queue()
        self.connections = 0
        self.snapshots_sent = 0
        server.routes["/feed/stream"] = self

    def push(self, kid: str) -> None:
        self.pushes.put(kid)

    def __call__(self, h: _Handler) -> None:
        self.connections += 1
        h.close_connection = True
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-store")
        h.send_header("connection", "close")
        h.end_headers()
        try:
            data = orjson.dumps({"revoked": orjson.loads(_revoked_doc(self.snapshot))["revoked"]})
            h.wfile.write(b"event: snapshot\r\ndata: " + data + b"\r\n\r\n")
            h.wfile.flush()
            self.snapshots_sent += 1
            if self.drop_first and self.connections == 1:
                return
            if self.reconnect_first is not None and self.connections == 1:
                time.sleep(self.reconnect_first)
                h.wfile.write(b"event: reconnect\ndata: {}\n\n")
                h.wfile.flush()
                return
            while not self.server.stopping.is_set():
                try:
                    kid = self.pushes.get(timeout=0.05)
                except queue.Empty:
                    h.wfile.write(b": keepalive\n\n")
                    h.wfile.flush()
                    continue
                event = orjson.dumps({"kid": kid, "revoked_at": 1732000000})
                h.wfile.write(b"event: revoked\ndata: " + event + b"\n\n")
                h.wfile.flush()
        except OSError:
            pass  # the verifier went away


def _serve_issuer(server: LocalServer, issuer: FakeIssuer) -> None:
    server.routes["/.well-known/openid-configuration"] = lambda h: h.reply(
        200,
        orjson.dumps(
            {
                "issuer": server.base,
                "jwks_uri": server.base + "/jwks.json",
                "keyturn_revocations_uri": server.base + "/feed/revocations.json",
                "keyturn_revocations_stream_uri": server.base + "/feed/stream",
            }
        ),
    )
    server.routes["/jwks.json"] = lambda h: h.reply(200, issuer.jwks_bytes())


@pytest.mark.parametrize("drop_first", [False, True], ids=["steady", "reconnects"])
def test_sse_push_revokes_within_a_second(
    server: LocalServer, clock: FakeClock, drop_first: bool
) -> None:
    issuer = FakeIssuer(clock)
    live, doomed, old = issuer.add_key(), issuer.add_key(), issuer.add_key()
    _serve_issuer(server, issuer)
    feed = StreamFeed(server, snapshot=[old], drop_first=drop_first)

    def token(kid: str) -> str:
        return issuer.signers[kid].sign({"iss": server.base, "exp": clock.now() + 60})

    with Verifier(
        algorithms=["ES256"],
        issuer=server.base,
        clock=clock,
        cache=CacheOptions(background=False),
        revocations=RevocationFeed(reconnect=Backoff(initial=0.05, maximum=0.2)),
    ) as verifier:
        verifier.verify(token(doomed))
        _until(lambda: feed.snapshots_sent >= (2 if drop_first else 1))
        _until(lambda: old in verifier.cache.revoked)  # from the snapshot
        with pytest.raises(RevokedKidError):
            verifier.verify(token(old))

        feed.push(doomed)
        took = _until(lambda: doomed in verifier.cache.revoked, timeout=1.0)
        assert took < 1.0
        with pytest.raises(RevokedKidError):
            verifier.verify(token(doomed))
        assert verifier.verify(token(live))["exp"]
    assert feed.connections == (2 if drop_first else 1)
    assert server.paths().count("/feed/stream") == feed.connections


def _planned_end(server: LocalServer, clock: FakeClock, after: float) -> tuple[Any, ...]:
    """A verifier on a stream whose first connection ends with ``reconnect`` after ``after`` s;
    its backoff (30 s) is far longer than any wait in these tests."""
    issuer = FakeIssuer(clock)
    kid = issuer.add_key()
    _serve_issuer(server, issuer)
    feed = StreamFeed(server, snapshot=[], reconnect_first=after)
    events: list[VerifierEvent] = []
    verifier = Verifier(
        algorithms=["ES256"],
        issuer=server.base,
        clock=clock,
        cache=CacheOptions(background=False),
        revocations=RevocationFeed(reconnect=Backoff(initial=30.0, jitter=0)),
        on_event=events.append,
    )
    return verifier, feed, events, kid


def test_a_planned_stream_end_reconnects_at_once_without_an_error(
    server: LocalServer, clock: FakeClock
) -> None:
    """The server ends a stream with ``event: reconnect`` (its stream lifetime, or shutdown):
    the verifier reconnects at once, not after a backoff, and reports no feed error."""
    verifier, feed, events, kid = _planned_end(server, clock, after=1.2)
    with verifier:
        verifier.start()
        _until(lambda: feed.connections >= 2 and feed.snapshots_sent >= 2, timeout=4.0)
        feed.push(kid)
        _until(lambda: kid in verifier.cache.revoked, timeout=2.0)
    names = [e.name for e in events]
    assert "feed_reconnect" in names
    assert "feed_error" not in names


def test_a_reconnect_request_at_once_goes_through_the_backoff(
    server: LocalServer, clock: FakeClock
) -> None:
    """A stream that asks for a reconnect right after connecting (a server shutting down that
    still accepts streams, a misbehaving proxy) must not make a reconnect loop."""
    verifier, feed, events, _ = _planned_end(server, clock, after=0.0)
    with verifier:
        verifier.start()
        _until(lambda: any(e.name == "feed_error" for e in events), timeout=3.0)
        # The decision itself, not a wait that hopes to see its effect: the next connection
        # is scheduled after the full backoff, not at once.
        error = next(e for e in events if e.name == "feed_error")
        assert error.data["retry_in"] == 30.0
        assert feed.connections == 1
    assert "feed_reconnect" not in [e.name for e in events]


# -- the SSE parser --------------------------------------------------------------------------


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _parse(parts: list[bytes]) -> list[tuple[str, str]]:
    async def collect() -> list[tuple[str, str]]:
        return [e async for e in sse_events(_chunks(parts))]

    return asyncio.run(collect())


STREAM = (
    b": keepalive\n\n"
    b'event: snapshot\r\ndata: {"revoked":\r\ndata: []}\r\n\r\n'
    b"id: 7\nretry: 100\n: note\n"
    b'event: revoked\ndata:{"kid": "a"}\n\n'
    b'data: {"kid": "b"}\r\r'
)
EXPECTED = [
    ("snapshot", '{"revoked":\n[]}'),
    ("revoked", '{"kid": "a"}'),
    ("message", '{"kid": "b"}'),
]


def test_sse_parser_handles_every_line_ending_and_comments() -> None:
    assert _parse([STREAM]) == EXPECTED


def test_sse_parser_is_indifferent_to_chunk_boundaries() -> None:
    for cut in range(1, len(STREAM)):
        assert _parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut
    assert _parse([bytes([b]) for b in STREAM]) == EXPECTED


def test_sse_parser_caps_an_endless_line() -> None:
    with pytest.raises(FeedError):
        _parse([b"data: " + b"x" * 100_000] * 5)


class _CountingBytes(bytes):
    """A chunk that counts the searches made in it."""

    finds = 0

    def find(self, *args: Any) -> int:  # type: ignore[override]
        type(self).finds += 1
        return super().find(*args)


def test_sse_parser_searches_each_line_ending_once() -> None:
    """A chunk of many short lines (400 KB of keepalives) is parsed in one pass: each line
    ending is searched for once, not the rest of the buffer re-scanned (and re-copied) per
    line, which made such a chunk quadratic."""
    from keyturn.verifier._feed import _SSEParser

    lines = 100_000
    chunk = _CountingBytes(b": k\n" * lines + b'event: revoked\ndata: {"kid": "z"}\n\n')
    parser = _SSEParser()
    assert parser.feed(chunk) == [("revoked", '{"kid": "z"}')]
    assert parser.buffer == b""
    # one search per \n, plus the first \n and \r searches and the final misses
    assert _CountingBytes.finds <= lines + 3 + 4
