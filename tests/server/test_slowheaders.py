"""The header-read deadline (slowloris), on a real uvicorn over loopback, both HTTP parsers.

Timeout 0.5 s; the sweep runs every 0.05 s. A connection whose headers are not complete is
closed after 0.5 s (and not much later), the clock starts again after each response (the next
request's headers), and it stops while a request is being served: a slow answer is not cut.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from keyturn.server.slowheaders import protocol

from .live import free_port

TIMEOUT = 0.5
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(1.2)  # longer than the header deadline
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        loop="auto",
        http=protocol(TIMEOUT, h11=request.param == "h11"),
        timeout_keep_alive=30,  # the header deadline, not keep-alive, must close them
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield port
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def connect() -> Iterator[Any]:
    opened: list[socket.socket] = []

    def open_to(port: int) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(s)
        return s

    yield open_to
    for s in opened:
        s.close()


def closed_after(s: socket.socket, t0: float) -> float:
    """Seconds from ``t0`` until the server closed ``s`` (reading and dropping any answer)."""
    s.settimeout(5)
    while True:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if data == b"":
            return time.monotonic() - t0
        assert b"200" not in data, "served a request whose headers never completed"


def answer(s: socket.socket) -> bytes:
    s.settimeout(5)
    data = b""
    while not data.endswith(b"ok"):
        chunk = s.recv(4096)
        assert chunk, f"closed before the answer: {data!r}"
        data += chunk
    return data


def test_unfinished_headers_are_cut_at_the_deadline(server: int, connect: Any) -> None:
    s = connect(server)
    t0 = time.monotonic()
    s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n")
    s.sendall(b"X-Slow: 1\r\n")  # more header bytes do not extend it
    took = closed_after(s, t0)
    assert 0.45 <= took < 0.5 + 0.05 + 0.4, took


def test_headers_finished_in_time_are_served(server: int, connect: Any) -> None:
    s = connect(server)
    s.sendall(b"GET /x HTTP/1.1\r\n")
    time.sleep(0.3)
    s.sendall(b"Host: t\r\n\r\n")
    assert answer(s).startswith(b"HTTP/1.1 200")


def test_the_deadline_starts_again_after_each_response(server: int, connect: Any) -> None:
    s = connect(server)
    for _ in range(3):  # each request well inside its own deadline, 0.9 s in all
        time.sleep(0.3)
        s.sendall(REQUEST)
        assert answer(s).startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    s.sendall(b"GET /x HTTP/1.1\r\n")  # the next request's headers never finish
    took = closed_after(s, t0)
    assert 0.4 <= took < 0.5 + 0.05 + 0.4, took


def test_a_slow_answer_is_not_cut(server: int, connect: Any) -> None:
    s = connect(server)
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer(s).startswith(b"HTTP/1.1 200")  # 1.2 s > the 0.5 s header deadline


def test_idle_keep_alive_is_closed_after_the_deadline(server: int, connect: Any) -> None:
    s = connect(server)
    s.sendall(REQUEST)
    answer(s)
    t0 = time.monotonic()
    took = closed_after(s, t0)
    assert 0.4 <= took < 0.5 + 0.05 + 0.4, took
