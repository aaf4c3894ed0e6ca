"""A header-read deadline for uvicorn: a connection whose request line and headers are not
complete within ``header_timeout`` seconds is closed.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and the size of incomplete
headers, but not how long a client may take to send them: a few hundred connections that
trickle a header byte now and then (slowloris) stay open indefinitely and hold file
descriptors. The deadline starts when a connection is made and again after every response
(the next request's headers), and stops when the headers are complete; request bodies are
bounded separately (``BodyLimit``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # uvicorn[standard]

DEFAULT_HEADER_TIMEOUT = 10.0
log = logging.getLogger("keyturn.server")


class _Deadlines:
    """Every connection's header deadline on one event loop, checked by one periodic sweep.

    A connection only notes when its header read started (``start``) or that it ended
    (``stop``): a float store, not a timer. A timer per request (``call_later`` and its
    cancel) cost ~4 µs a request, a tenth of what the sign API adds to a signature. The sweep
    runs every ``timeout / 10`` (at most once a second) while connections are open, so a
    connection is closed between ``timeout`` and ``timeout + timeout / 10`` after its header
    read began.
    """

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.every = min(1.0, max(0.01, timeout / 10))
        self.started: dict[asyncio.Transport, float | None] = {}
        self.sweeping: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, timeout: float) -> _Deadlines:
        """The loop's deadlines (one sweep for all its connections)."""
        found = cls._per_loop.get(loop)
        if found is None or found.timeout != timeout:
            found = cls._per_loop[loop] = cls(loop, timeout)
        return found

    def start(self, transport: asyncio.Transport) -> None:
        if transport.is_closing():
            return
        self.started[transport] = self.loop.time()
        if self.sweeping is None:
            self.sweeping = self.loop.call_later(self.every, self._sweep)

    def stop(self, transport: asyncio.Transport) -> None:
        if transport in self.started:
            self.started[transport] = None

    def forget(self, transport: asyncio.Transport) -> None:
        self.started.pop(transport, None)

    def _sweep(self) -> None:
        self.sweeping = None
        cutoff = self.loop.time() - self.timeout
        late = [t for t, since in self.started.items() if since is not None and since <= cutoff]
        for transport in late:
            del self.started[transport]
            if not transport.is_closing():
                log.info("closing a connection: request headers not complete in %gs", self.timeout)
                transport.close()
        if self.started:
            self.sweeping = self.loop.call_later(self.every, self._sweep)


class H11WithHeaderTimeout(H11Protocol):
    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kw: Any):
        super().__init__(*args, **kw)
        self._deadlines = _Deadlines.of(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadlines.start(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadlines.forget(self.transport)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._deadlines.stop(self.transport)  # this request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadlines.start(self.transport)


class HttpToolsWithHeaderTimeout(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kw: Any):
        super().__init__(*args, **kw)
        self._deadlines = _Deadlines.of(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadlines.start(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadlines.forget(self.transport)
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._deadlines.stop(self.transport)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadlines.start(self.transport)


def protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT, *, h11: bool = False) -> Any:
    """What to pass as uvicorn's ``http``: httptools (what uvicorn's "auto" picks with
    uvicorn[standard]) or h11, with the header deadline. A ``functools.partial`` of a
    module-level class, so ``--workers`` can hand it to worker processes."""
    cls = H11WithHeaderTimeout if h11 else HttpToolsWithHeaderTimeout
    return functools.partial(cls, header_timeout=header_timeout)
