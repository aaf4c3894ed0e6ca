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
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # uvicorn[standard]

DEFAULT_HEADER_TIMEOUT = 10.0
log = logging.getLogger("keyturn.server")


class _Deadline:
    """One connection's header timer; ``expire`` closes the transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, transport: asyncio.Transport) -> None:
        self.disarm()
        if not transport.is_closing():
            self.timer = self.loop.call_later(self.timeout, self._expire, transport)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self, transport: asyncio.Transport) -> None:
        self.timer = None
        if not transport.is_closing():
            log.info("closing a connection: request headers not complete in %gs", self.timeout)
            transport.close()


class H11WithHeaderTimeout(H11Protocol):
    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kw: Any):
        super().__init__(*args, **kw)
        self._deadline = _Deadline(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline.arm(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._deadline.disarm()  # this request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadline.arm(self.transport)


class HttpToolsWithHeaderTimeout(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kw: Any):
        super().__init__(*args, **kw)
        self._deadline = _Deadline(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline.arm(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._deadline.disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadline.arm(self.transport)


def protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT, *, h11: bool = False) -> Any:
    """What to pass as uvicorn's ``http``: httptools (what uvicorn's "auto" picks with
    uvicorn[standard]) or h11, with the header deadline. A ``functools.partial`` of a
    module-level class, so ``--workers`` can hand it to worker processes."""
    cls = H11WithHeaderTimeout if h11 else HttpToolsWithHeaderTimeout
    return functools.partial(cls, header_timeout=header_timeout)
