"""Fixtures for the verifier: a fake issuer behind httpx.MockTransport, a fake clock, keys."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest

from keyturn.clock import FakeClock
from keyturn.keys import Alg, generate_private_key, public_jwk, thumbprint
from keyturn.tokens import TokenSigner
from keyturn.verifier import CacheOptions, Verifier

ISSUER = "https://issuer.example"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
START = 1_800_000_000.0

_KEY_CACHE: dict[Alg, list[Any]] = {}


def _key(alg: Alg, index: int) -> Any:
    """Keys are generated once per run and reused: RSA generation is slow."""
    keys = _KEY_CACHE.setdefault(alg, [])
    while len(keys) <= index:
        keys.append(generate_private_key(alg))
    return keys[index]


class FakeIssuer:
    """An issuer's JWKS and discovery over MockTransport, with knobs for every failure mode."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.signers: dict[str, TokenSigner] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.max_age: int | None = 300
        self.cache_control: str | None = None
        self.fail_status: int | None = None
        self.fail_exc: Exception | None = None
        self.use_etag = True
        self.gate: threading.Event | None = None  # when set, JWKS requests wait for it
        self.jwks_requests: list[httpx.Request] = []
        self.discovery_requests = 0
        self.discovery_issuer = ISSUER
        self.extra_discovery: dict[str, Any] = {}
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self._count = 0
        self._lock = threading.Lock()

    # -- keys and tokens -----------------------------------------------------------------
    def add_key(self, alg: Alg = Alg.ES256, *, publish: bool = True) -> str:
        key = _key(alg, self._count)
        self._count += 1
        kid = thumbprint(key)
        self.signers[kid] = TokenSigner(key, alg, kid)
        if publish:
            self.published[kid] = public_jwk(key, alg, kid)
        return kid

    def unpublish(self, kid: str) -> None:
        self.published.pop(kid, None)

    def token(self, kid: str, ttl: int = 3600, **claims: Any) -> str:
        now = int(self.clock.now())
        body: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + ttl}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return self.signers[kid].sign(body)

    def jwks_bytes(self) -> bytes:
        return orjson.dumps({"keys": list(self.published.values())})

    # -- HTTP ------------------------------------------------------------------------------
    @property
    def fetches(self) -> int:
        return len(self.jwks_requests)

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url in self.routes:
            return self.routes[url](request)
        if url == DISCOVERY_URL:
            self.discovery_requests += 1
            doc = {"issuer": self.discovery_issuer, "jwks_uri": JWKS_URL, **self.extra_discovery}
            return httpx.Response(200, json=doc)
        if url != JWKS_URL:
            return httpx.Response(404)
        with self._lock:
            self.jwks_requests.append(request)
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail_exc is not None:
            raise self.fail_exc
        if self.fail_status is not None:
            return httpx.Response(self.fail_status)
        body = self.jwks_bytes()
        headers = {"content-type": "application/jwk-set+json"}
        if self.cache_control is not None:
            headers["cache-control"] = self.cache_control
        elif self.max_age is not None:
            headers["cache-control"] = f"public, max-age={self.max_age}"
        if self.use_etag:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["etag"] = etag
            if request.headers.get("if-none-match") == etag:
                return httpx.Response(304, headers=headers)
        return httpx.Response(200, content=body, headers=headers)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def issuer(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(clock)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


# -- a real HTTP server on 127.0.0.1 ---------------------------------------------------------

Route = Callable[["_Handler"], None]


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.hits.append((self.path, dict(self.headers.items())))
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        route(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class LocalServer(ThreadingHTTPServer):
    """A threaded HTTP server on a free loopback port; routes are set by the test."""

    daemon_threads = False
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})

    def handle_error(self, request: object, client_address: object) -> None:
        # The size-cap and timeout tests hang up on purpose: a broken pipe here is expected,
        # and socketserver's default would print a traceback into the test output.
        pass

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self._thread.join()
        self.server_close()

    def paths(self) -> list[str]:
        return [p for p, _ in self.hits]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_verifier(
    issuer: FakeIssuer, clock: FakeClock, rng: random.Random
) -> Iterator[Callable[..., Verifier]]:
    """Build sync verifiers on the fake issuer (no background thread unless asked); closed after."""
    made: list[Verifier] = []

    def make(**kw: Any) -> Verifier:
        kw.setdefault("algorithms", [Alg.ES256, Alg.RS256, Alg.EdDSA])
        if "jwks_url" not in kw:
            kw.setdefault("issuer", ISSUER)
        if "client" not in kw:
            kw.setdefault("transport", issuer.transport())
        kw.setdefault("clock", clock)
        kw.setdefault("rng", rng)
        kw.setdefault("cache", CacheOptions(background=False))
        verifier = Verifier(**kw)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()
