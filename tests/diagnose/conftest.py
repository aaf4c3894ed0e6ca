"""Fixtures for diagnosis tests: real HTTP servers on 127.0.0.1, keys, and token helpers.

Two kinds of issuer:
- ``keyturn_issuer``: a small thread server that answers like keyturn does (discovery with
  ``keyturn_revocations_uri``, JWKS with ``Cache-Control: public, max-age=C`` and a strong
  ETag, a revocation feed), with knobs to misbehave (stale copies, Age, Date offsets);
- ``static_server``: ``http.server.SimpleHTTPRequestHandler`` over a directory, i.e.
  ``python -m http.server``: no Cache-Control, no discovery, a JWKS keyturn did not produce.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from keyturn.keys.algorithms import Alg, PrivateKey
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import public_jwk
from keyturn.tokens.signer import TokenSigner, issue_claims


# --- keys and tokens -----------------------------------------------------------------------
@dataclass
class Key:
    private: PrivateKey
    alg: Alg
    kid: str

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        out = public_jwk(self.private, self.alg, kid=self.kid)
        out.update(overrides)
        return out

    def sign(
        self, claims: dict[str, Any], *, alg: Alg | None = None, kid: str | None = None
    ) -> str:
        return TokenSigner(self.private, alg or self.alg, kid or self.kid).sign(claims)


_KEY_CACHE: dict[tuple[Alg, int], PrivateKey] = {}


def make_key(alg: Alg = Alg.ES256, *, kid: str | None = None, slot: int = 0) -> Key:
    """A key per (alg, slot), generated once per session: RSA generation is slow."""
    priv = _KEY_CACHE.get((alg, slot))
    if priv is None:
        priv = _KEY_CACHE[(alg, slot)] = generate_private_key(alg)
    default_kid = public_jwk(priv, alg)["kid"]
    return Key(priv, alg, kid or default_kid)


def claims(issuer: str, now: float, *, ttl: int = 3600, **extra: Any) -> dict[str, Any]:
    return issue_claims(dict(extra), issuer=issuer, now=int(now), ttl=ttl)


# --- HTTP servers --------------------------------------------------------------------------
Response = tuple[int, dict[str, str], bytes]
Route = Callable[[http.server.BaseHTTPRequestHandler], Response]


@dataclass
class Server:
    """A thread HTTP server on 127.0.0.1; ``routes`` maps a path to a response or a function."""

    httpd: http.server.HTTPServer
    thread: threading.Thread
    routes: dict[str, Response | Route] = field(default_factory=dict)
    date_offset: float = 0.0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _handler_class(server_ref: list[Server]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            # Tests set the server's clock offset to simulate skewed hosts.
            return formatdate(time.time() + server_ref[0].date_offset, usegmt=True)

        def do_GET(self) -> None:
            srv = server_ref[0]
            srv.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = srv.routes.get(self.path.split("?")[0])
            if route is None:
                status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
            elif callable(route):
                status, headers, body = route(self)
            else:
                status, headers, body = route
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class _HTTPServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Diagnosis hangs up on purpose (size cap, timeout): a broken pipe here is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start_server(handler: type[http.server.BaseHTTPRequestHandler] | None = None) -> Server:
    ref: list[Server] = []
    httpd = _HTTPServer(("127.0.0.1", 0), handler or _handler_class(ref))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    server = Server(httpd, thread)
    ref.append(server)
    thread.start()
    return server


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


# --- a keyturn-like issuer -----------------------------------------------------------------
def jwks_response(
    keys: list[dict[str, Any]], max_age: int | None = 600, **headers: str
) -> Response:
    body = orjson.dumps({"keys": keys})
    out = {"Content-Type": "application/jwk-set+json"}
    if max_age is not None:
        out["Cache-Control"] = f"public, max-age={max_age}"
    out["ETag"] = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    out.update(headers)
    return 200, out, body


@dataclass
class Issuer:
    """A keyturn-like issuer: current + next keys published, revocations feed, discovery."""

    server: Server
    current: Key
    next: Key
    max_age: int = 600
    published: list[Key] = field(default_factory=list)
    revoked: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def publish(self, keys: list[Key] | None = None, **headers: str) -> None:
        if keys is not None:
            self.published = keys
        self.server.routes["/.well-known/jwks.json"] = jwks_response(
            [k.jwk() for k in self.published], self.max_age, **headers
        )
        self.server.routes["/revocations.json"] = (
            200,
            {
                "Content-Type": "application/json",
                "Cache-Control": f"public, max-age={self.max_age}",
            },
            orjson.dumps({"issuer": self.url, "revoked": self.revoked}),
        )
        doc = {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": sorted({k.alg.value for k in self.published}),
            "keyturn_revocations_uri": f"{self.url}/revocations.json",
        }
        self.server.routes["/.well-known/openid-configuration"] = (
            200,
            {
                "Content-Type": "application/json",
                "Cache-Control": f"public, max-age={self.max_age}",
            },
            orjson.dumps(doc),
        )

    def revoke(self, key: Key, when: float, reason: str = "key compromised") -> None:
        self.published = [k for k in self.published if k.kid != key.kid]
        self.revoked.append({"kid": key.kid, "revoked_at": when, "reason": reason})
        self.publish()

    def token(self, now: float, **extra: Any) -> str:
        return self.current.sign(claims(self.url, now, **extra))


@pytest.fixture
def issuer(http_server: Server) -> Issuer:
    cur, nxt = make_key(Alg.ES256, slot=0), make_key(Alg.ES256, slot=1)
    iss = Issuer(http_server, cur, nxt, published=[cur, nxt])
    iss.publish()
    return iss


# --- a static file server (python -m http.server) ------------------------------------------
@dataclass
class Static:
    server: Server
    root: Path

    def url(self, name: str) -> str:
        return f"{self.server.url}/{name}"

    def write(self, name: str, data: bytes | dict[str, Any]) -> str:
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        (self.root / name).write_bytes(raw)
        return self.url(name)


class _QuietStatic(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def static(tmp_path: Path) -> Iterator[Static]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietStatic, directory=str(root))
    server = start_server(handler)  # type: ignore[arg-type]
    try:
        yield Static(server, root)
    finally:
        server.stop()
