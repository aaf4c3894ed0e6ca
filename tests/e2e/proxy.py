"""A tiny loopback TCP proxy that can be cut and restored: "the JWKS endpoint is down".

Verifiers reach keyturn through it (the server's public URL is the proxy's), so cutting it takes
discovery, JWKS and the revocation feed away from them while the server keeps signing.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

_TICK = 0.05


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (linger 0): the client sees a refused/reset connection at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TCPProxy:
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:target_port``; ``cut()`` / ``restore()``.

    While cut, every open connection is reset and new ones are accepted and reset at once.
    Set ``target_port`` before the first connection (it may be chosen after the proxy's port).
    """

    def __init__(self, target_port: int | None = None) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._up = threading.Event()
        self._up.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pumps: set[threading.Thread] = set()
        self.connections = 0  # accepted and forwarded, for the test's curiosity
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept")
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, timeout: float = 5.0) -> None:
        """Reset every open connection and refuse new ones until ``restore()``."""
        self._up.clear()
        deadline = time.monotonic() + timeout
        while self._live_pumps() and time.monotonic() < deadline:
            time.sleep(_TICK / 2)
        if self._live_pumps():
            raise RuntimeError("proxy connections still open after cut()")

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed.set()
        self._up.clear()
        self._acceptor.join(5)
        with self._lock:
            pumps = list(self._pumps)
        for t in pumps:
            t.join(5)
        self._listener.close()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _live_pumps(self) -> bool:
        with self._lock:
            self._pumps = {t for t in self._pumps if t.is_alive()}
            return bool(self._pumps)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self._listener], [], [], _TICK)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            if not self._up.is_set() or self.target_port is None:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                _reset(client)
                continue
            self.connections += 1
            pump = threading.Thread(
                target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
            )
            with self._lock:
                self._pumps.add(pump)
            pump.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        try:
            while self._up.is_set():
                ready, _, _ = select.select([client, upstream], [], [], _TICK)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)
        except OSError:
            pass
        finally:
            if self._up.is_set():
                client.close()  # an orderly end: let buffered bytes reach the client
            else:
                _reset(client)
            upstream.close()
