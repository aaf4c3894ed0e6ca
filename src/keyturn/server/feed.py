"""The revocation stream: Server-Sent Events that push each revocation the moment it commits.

Wire format (fixed; the verifier library consumes it)::

    event: snapshot
    data: {"revoked": [{"kid": ..., "revoked_at": ..., "reason": ...}, ...]}

    event: revoked
    data: {"kid": ..., "revoked_at": ..., "reason": ...}

    : keepalive

    event: reconnect
    data: {}

``reconnect`` comes last, just before the server ends a stream on purpose: at the end of its
maximum lifetime (so long-lived connections re-spread over replicas after a deploy or a scale-up,
and no stream outlives rotated credentials at the load balancer), or at shutdown. A client
reconnects at once and counts it as no error; the snapshot on reconnect covers anything
committed in between.

Every subscriber keeps the set of kids it has announced and receives, after each change of its
tenant, the tenant's whole revoked list; it sends only what is new to it. A subscriber that
joined while a change was committing therefore never misses it, at worst it sees it in its
snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import orjson

from keyturn.server.documents import DocumentCache, Revocation, TenantDocs
from keyturn.server.problems import problem, send_problem

log = logging.getLogger("keyturn.server.feed")

DEFAULT_KEEPALIVE = 15.0
DEFAULT_MAX_STREAMS = 1000
DEFAULT_MAX_LIFETIME = 3600.0
RECONNECT = b"event: reconnect\ndata: {}\n\n"
KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]

Scope = dict[str, Any]
_CLOSE = object()
_GONE = object()


def snapshot_event(revoked: tuple[Revocation, ...]) -> bytes:
    data = orjson.dumps({"revoked": [r.to_dict() for r in revoked]})
    return b"event: snapshot\ndata: " + data + b"\n\n"


def revoked_event(rev: Revocation) -> bytes:
    return b"event: revoked\ndata: " + orjson.dumps(rev.to_dict()) + b"\n\n"


class RevocationHub:
    """Subscribers per tenant; fed by cache invalidations, from any thread."""

    def __init__(
        self,
        cache: DocumentCache,
        *,
        keepalive: float = DEFAULT_KEEPALIVE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
    ) -> None:
        if keepalive <= 0:
            raise ValueError("keepalive must be positive")
        if not max_lifetime > 0:
            raise ValueError("max_lifetime must be positive")
        if max_streams < 1:
            raise ValueError("max_streams must be positive")
        self.cache = cache
        self.keepalive = keepalive
        # Streams need no credentials: without a cap, enough idle connections would use up
        # memory and file descriptors and slow the JWKS hot path they share a process with.
        self.max_streams = max_streams
        # Streams end after about this long (minus up to 10% jitter, so streams opened together
        # do not all reconnect together).
        self.max_lifetime = max_lifetime
        self._subs: dict[str, set[asyncio.Queue[object]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshing: set[str] = set()
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        cache.add_listener(self._invalidated)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    # --- change notifications --------------------------------------------------------------
    def _invalidated(self, name: str | None) -> None:
        """Cache listener: may run in any thread; hops onto the event loop."""
        loop = self._loop
        if loop is None or self.closed:
            return
        # RuntimeError: the loop has closed, nothing is left to push to.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._changed, name)

    def _changed(self, name: str | None) -> None:
        if name is None:  # anything may have changed: refresh every subscribed tenant
            for each in list(self._subs):
                self._changed(each)
            return
        if name not in self._subs:
            return
        if name in self._refreshing:
            # Coalesce: one more refresh after the running one, however many changes came.
            self._dirty.add(name)
            return
        self._refreshing.add(name)
        task = asyncio.get_running_loop().create_task(self._refresh(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, name: str) -> None:
        try:
            while True:
                self._dirty.discard(name)
                try:
                    # Subscribed tenants exist: their refresh skips the queue of cache misses.
                    docs = await self.cache.get(name, priority=True)
                except Exception as exc:  # the store is down: the watcher will notify again
                    log.warning("revocation feed: cannot reload tenant %s: %s", name, exc)
                    return
                if docs is not None:
                    for q in self._subs.get(name, ()):
                        q.put_nowait(docs)
                if name not in self._dirty:
                    return
        finally:
            self._refreshing.discard(name)

    # --- lifecycle -------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        """End every stream cleanly (server shutdown); call on the event loop."""
        self.closed = True
        for subs in self._subs.values():
            for q in subs:
                q.put_nowait(_CLOSE)

    def close_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            self.closed = True
            return
        try:
            loop.call_soon_threadsafe(self.close)
        except RuntimeError:
            self.closed = True

    # --- one stream ------------------------------------------------------------------------
    async def stream(self, scope: Scope, receive: Any, send: Any, docs: TenantDocs) -> None:
        """Serve one SSE connection until the client leaves or the server shuts down."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self.closed or self.subscribers >= self.max_streams:
            # Closed: shutting down. A stream accepted now would end at once with "reconnect"
            # and come straight back; a 503 sends the client to its backoff (or elsewhere).
            detail = (
                "this server is shutting down; reconnect to another"
                if self.closed
                else "too many revocation streams open; poll revocations.json"
            )
            await send_problem(
                send,
                503,
                problem(503, detail, "busy"),
                [(b"retry-after", b"30"), (b"cache-control", b"no-store")],
            )
            return
        name = docs.name
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._subs.setdefault(name, set()).add(queue)
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, queue))
        try:
            # Registered first, snapshot second: a change committing in between is either in
            # this snapshot or pushed through the queue afterwards.
            fresh = await self.cache.get(name)
            if fresh is not None:
                docs = fresh
            seen = {r.kid for r in docs.revoked}
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send(
                {
                    "type": "http.response.body",
                    "body": snapshot_event(docs.revoked),
                    "more_body": True,
                }
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_lifetime * (1.0 - 0.1 * random.random())
            while not self.closed:
                left = deadline - loop.time()
                if left <= 0:
                    break  # lifetime over: ask the client to reconnect (below)
                try:
                    item = await asyncio.wait_for(queue.get(), min(self.keepalive, left))
                except TimeoutError:
                    if loop.time() >= deadline:
                        break
                    item = None
                if item is _GONE:
                    return
                if item is _CLOSE:
                    break
                if item is None:
                    chunk = KEEPALIVE
                else:
                    assert isinstance(item, TenantDocs)
                    new = [r for r in item.revoked if r.kid not in seen]
                    if not new:
                        continue
                    seen.update(r.kid for r in new)
                    chunk = b"".join(revoked_event(r) for r in new)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # A planned end (lifetime or shutdown): the client reconnects at once, no backoff.
            await send({"type": "http.response.body", "body": RECONNECT, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            return
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            subs = self._subs.get(name)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subs[name]

    @staticmethod
    async def _watch_disconnect(receive: Any, queue: asyncio.Queue[object]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                queue.put_nowait(_GONE)
                return
