"""Revocation feed client: poll ``revocations.json`` or follow the Server-Sent Events stream.

The feed format (served by keyturn per tenant, ``{base}`` being the issuer URL)::

    GET {base}/revocations.json   -> {"issuer": "...", "revoked": [{"kid", "revoked_at", "reason"}]}
                                     with an ETag (If-None-Match answered with 304)
    GET {base}/revocations/stream -> event: snapshot / data: {"revoked": [...]}
                                     event: revoked  / data: {"kid": "...", "revoked_at": ...}
                                     ": keepalive" comments every ~15 s

Revocations are permanent: the client only ever adds kids to the refused set.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from keyturn.errors import ConfigError, KeyturnError, ResponseTooLargeError
from keyturn.errors import FeedError as FeedError  # re-exported
from keyturn.errors import FeedTooLargeError as FeedTooLargeError  # re-exported
from keyturn.jwks_http import check_url, discovery_url, revocations_stream_url, revocations_url
from keyturn.verifier import _metrics as ev
from keyturn.verifier._core import CacheCore
from keyturn.verifier._http import (
    USER_AGENT,
    check_status,
    get_async,
    parse_discovery,
    parse_json_object,
)
from keyturn.verifier._metrics import logger
from keyturn.verifier._options import HTTPOptions, RevocationFeed

MAX_EVENT_BYTES = 256 * 1024
# A stream must have lasted this long for its "reconnect" to skip the backoff.
MIN_PLANNED_STREAM = 1.0


class _NotAdvertised(Exception):
    """The issuer's discovery names no feed: a ``when_advertised`` feed stays off."""


def check_feed_config(feed: RevocationFeed, issuer: str | None) -> None:
    """Refuse a feed with no URL to reach, at construction rather than in a background task."""
    if feed.url is not None:
        check_url(feed.url, "revocation feed url")
    elif issuer is None and not feed.when_advertised:
        raise ConfigError("a revocation feed needs an issuer URL or RevocationFeed(url=...)")


def feed_wanted(feed: RevocationFeed | None, issuer: str | None, jwks_url: str | None) -> bool:
    """Whether a verifier so configured runs the feed (a default feed needs discovery)."""
    if feed is None:
        return False
    if feed.when_advertised and feed.url is None:
        return issuer is not None and jwks_url is None
    return True


def _kids(entries: object) -> list[str]:
    if not isinstance(entries, list):
        raise FeedError("revocation feed: 'revoked' is not a list")
    return [e["kid"] for e in entries if isinstance(e, dict) and isinstance(e.get("kid"), str)]


class _SSEParser:
    """Incremental text/event-stream parser (the WHATWG rules keyturn's feed needs)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.event = ""
        self.data: list[str] = []
        self.size = 0

    def feed(self, chunk: bytes, *, eof: bool = False) -> list[tuple[str, str]]:
        """Events completed by ``chunk``; linear in its size.

        Lines are cut at offsets into one buffer, and each line ending is searched for once
        (not the rest of the buffer re-scanned and re-copied per line, which a chunk of many
        short lines would make quadratic).
        """
        buf = self.buffer + chunk if self.buffer else chunk
        n = len(buf)
        out: list[tuple[str, str]] = []
        pos = 0
        nl = buf.find(b"\n")
        cr = buf.find(b"\r")
        while nl >= 0 or cr >= 0:
            # SSE lines end with \r\n, \n or \r: cut at whichever comes first.
            if cr < 0 or 0 <= nl < cr:
                cut, step = nl, 1
            else:
                cut = cr
                if cut + 1 == n and not eof:
                    break  # a trailing \r may be the first half of \r\n: wait for more
                step = 2 if cut + 1 < n and buf[cut + 1] == 0x0A else 1
            self._line(buf[pos:cut].decode("utf-8", errors="replace"), out)
            pos = cut + step
            if 0 <= nl < pos:
                nl = buf.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = buf.find(b"\r", pos)
        self.buffer = buf[pos:]
        if len(self.buffer) > MAX_EVENT_BYTES:
            raise FeedTooLargeError(f"revocation stream line longer than {MAX_EVENT_BYTES} bytes")
        return out

    def _line(self, line: str, out: list[tuple[str, str]]) -> None:
        if not line:
            if self.data:
                out.append((self.event or "message", "\n".join(self.data)))
            self.event, self.data, self.size = "", [], 0
            return
        if line.startswith(":"):
            return  # a comment, e.g. ": keepalive"
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.size += len(value)
            if self.size > MAX_EVENT_BYTES:
                raise FeedTooLargeError(f"revocation event larger than {MAX_EVENT_BYTES} bytes")
            self.data.append(value)


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, str]]:
    """Parse a text/event-stream into ``(event, data)`` pairs; comments are skipped.

    Lines are split here rather than by httpx so one endless line cannot grow without bound.
    An event not closed by a blank line before the stream ends is dropped, as the spec says.
    """
    parser = _SSEParser()
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
    for item in parser.feed(b"", eof=True):
        yield item


class RevocationSubscriber:
    """Runs one feed subscription until cancelled, applying revocations to a cache core."""

    def __init__(
        self,
        *,
        feed: RevocationFeed,
        core: CacheCore,
        http: HTTPOptions,
        rng: random.Random | None = None,
        discover: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        check_feed_config(feed, core.issuer)
        self.discover = discover
        self.feed = feed
        self.core = core
        self.http = http
        self.rng = rng or random.Random()
        self.failures = 0
        self._etag: str | None = None

    async def run(self, client: httpx.AsyncClient) -> None:
        """Poll or stream forever; errors back off and retry, cancellation stops."""
        while True:
            try:
                if self.feed.mode == "stream":
                    started = time.monotonic()
                    planned = await self._stream_once(client)
                    if planned and time.monotonic() - started >= MIN_PLANNED_STREAM:
                        # A planned end (the server's stream lifetime, or its shutdown): no
                        # error and no backoff; the snapshot on reconnect covers the gap. A
                        # stream that asks for a reconnect at once is not trusted with that:
                        # it goes through the backoff, or it could make a reconnect loop.
                        self.core.emit(ev.FEED_RECONNECT)
                        delay = 0.05 + 0.2 * self.rng.random()
                    else:
                        delay = self._fail(FeedError("revocation stream closed by the server"))
                else:
                    delay = await self._poll_once(client)
            except _NotAdvertised:
                self.core.emit(ev.FEED_OFF, reason="the issuer's discovery advertises no feed")
                return
            except KeyturnError as exc:
                delay = self._fail(exc)
            except httpx.HTTPError as exc:
                delay = self._fail(FeedError(f"revocation feed: {exc!r}"))
            except Exception as exc:
                logger.exception("keyturn revocation feed failed unexpectedly")
                delay = self._fail(FeedError(f"revocation feed: {exc!r}"))
            await asyncio.sleep(delay)

    def _fail(self, exc: KeyturnError) -> float:
        self.failures += 1
        delay = self.feed.reconnect.delay(self.failures, self.rng)
        too_large = isinstance(exc, FeedTooLargeError | ResponseTooLargeError)
        if too_large:
            logger.error(
                "keyturn revocation feed of %s: %s; revocations are NOT arriving (retry in %.1fs)",
                self.core.issuer or self.feed.url,
                exc.detail,
                delay,
            )
        self.core.metrics.feed_failed(too_large=too_large)
        self.core.emit(ev.FEED_ERROR, error=exc.detail, failures=self.failures, retry_in=delay)
        return delay

    async def _url(self, client: httpx.AsyncClient) -> str:
        if self.feed.url is not None:
            return self.feed.url
        core = self.core
        assert core.issuer is not None
        discovery = core.discovery
        if discovery is None and core.jwks_url is None and self.discover is not None:
            # Through the key cache, one discovery at a time: its first fetch starts with the
            # feed, and the issuer is not asked twice.
            await self.discover()
            discovery = core.discovery
        if discovery is None and core.jwks_url is None:
            response = await get_async(client, discovery_url(core.issuer), {}, self.http)
            discovery = parse_discovery(response, core.issuer)
        if self.feed.mode == "stream":
            found = discovery.revocations_stream_uri if discovery else None
            if found is None and self.feed.when_advertised:
                raise _NotAdvertised
            return found or revocations_stream_url(core.issuer)
        found = discovery.revocations_uri if discovery else None
        if found is None and self.feed.when_advertised:
            raise _NotAdvertised
        return found or revocations_url(core.issuer)

    def _check_issuer(self, doc: dict[str, Any]) -> None:
        named = doc.get("issuer")
        if named is not None and self.core.issuer is not None and named != self.core.issuer:
            # Another issuer's list would refuse our keys: a denial of service, not a safety gain.
            raise FeedError(f"revocation feed names issuer {named!r}, not {self.core.issuer!r}")

    async def _poll_once(self, client: httpx.AsyncClient) -> float:
        url = await self._url(client)
        etag = self._etag
        headers = {"Accept": "application/json"}
        if etag is not None:
            headers["If-None-Match"] = etag
        response = await get_async(client, url, headers, self.http)
        check_status(response, allow_304=etag is not None)
        if response.status == 200:
            doc = parse_json_object(response, "revocation feed")
            self._check_issuer(doc)
            self.core.revoke(_kids(doc.get("revoked")), "feed")
            self._etag = response.headers.get("etag")
        self.failures = 0
        return self.feed.poll_interval * (1.0 - 0.1 * self.rng.random())

    async def _stream_once(self, client: httpx.AsyncClient) -> bool:
        """Follow the stream until it ends; True if the server asked for a reconnect."""
        url = await self._url(client)
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "User-Agent": USER_AGENT,
        }
        # The read timeout outlasts several keepalives; a silent dead connection is dropped.
        timeout = httpx.Timeout(self.http.timeout, read=self.feed.read_timeout)
        async with client.stream(
            "GET", url, headers=headers, follow_redirects=False, timeout=timeout
        ) as response:
            if response.status_code != 200:
                where = response.headers.get("location")
                raise FeedError(
                    f"revocation stream {url} answered {response.status_code}"
                    + (f" to {where}; redirects are not followed" if where else "")
                )
            async for event, data in sse_events(response.aiter_bytes()):
                try:
                    payload = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise FeedError(f"revocation stream sent a non-JSON {event!r} event") from None
                if not isinstance(payload, dict):
                    raise FeedError(f"revocation stream sent a non-object {event!r} event")
                if event == "snapshot":
                    self._check_issuer(payload)
                    self.core.revoke(_kids(payload.get("revoked")), "feed")
                    self.failures = 0  # a healthy connection: the next reconnect is quick
                elif event == "revoked" and isinstance(payload.get("kid"), str):
                    self.core.revoke([payload["kid"]], "feed")
                elif event == "reconnect":
                    return True
        return False


class FeedThread:
    """Runs a subscriber on its own event loop in a daemon thread (for the sync verifier).

    An event loop rather than a blocking read because only cancellation stops a read that is
    waiting for the next keepalive promptly and cleanly.
    """

    def __init__(
        self, subscriber: RevocationSubscriber, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self._subscriber = subscriber
        self._transport = transport
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="keyturn-revocations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except Exception:
            logger.exception("keyturn revocation feed thread stopped")
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        async with httpx.AsyncClient(transport=self._transport, follow_redirects=False) as client:
            run = asyncio.create_task(self._subscriber.run(client))
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (run, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self._ready.wait(timeout)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
