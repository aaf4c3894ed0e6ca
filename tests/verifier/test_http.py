"""Behaviour 8, safe HTTP: HTTPS except loopback, no redirects, size cap, timeout; discovery.

Conditional GET, redirects, the size cap and the timeout also run against a real server on
127.0.0.1, since MockTransport cannot show what goes over a socket.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from keyturn.clock import FakeClock
from keyturn.errors import ConfigError, JWKSUnavailableError
from keyturn.verifier import CacheOptions, DiscoveryError, HTTPOptions, JWKSCache, Verifier

from .conftest import DISCOVERY_URL, ISSUER, JWKS_URL, FakeIssuer, LocalServer, _Handler

MakeVerifier = Callable[..., Verifier]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://issuer.example/jwks.json", id="https"),
        pytest.param("http://127.0.0.1:8080/jwks.json", id="ipv4-loopback"),
        pytest.param("http://127.9.8.7/jwks.json", id="anywhere-in-127/8"),
        pytest.param("http://[::1]:8080/jwks.json", id="ipv6-loopback"),
        pytest.param("http://localhost:8080/jwks.json", id="localhost"),
    ],
)
def test_allowed_urls(url: str) -> None:
    JWKSCache(jwks_url=url, cache=CacheOptions(background=False)).close()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://issuer.example/jwks.json", id="plain-http"),
        pytest.param("http://10.0.0.1/jwks.json", id="private-is-not-loopback"),
        pytest.param("http://127.0.0.1.evil.example/jwks.json", id="loopback-lookalike"),
        pytest.param("ftp://issuer.example/jwks.json", id="ftp"),
        pytest.param("https://user:pw@issuer.example/jwks.json", id="credentials"),
        pytest.param("/jwks.json", id="relative"),
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        JWKSCache(jwks_url=url)
    with pytest.raises(ConfigError):
        Verifier(algorithms=["ES256"], issuer=url)


def test_discovered_jwks_uri_must_be_safe_too(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.routes[DISCOVERY_URL] = lambda _r: httpx.Response(
        200, json={"issuer": ISSUER, "jwks_uri": "http://issuer.example/jwks.json"}
    )
    verifier = make_verifier()
    with pytest.raises(DiscoveryError) as info:
        verifier.verify(issuer.token(kid))
    assert info.value.action == "retry"
    assert issuer.fetches == 0


def test_discovery_must_name_exactly_the_configured_issuer(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.discovery_issuer = ISSUER + "/"  # a near miss is a miss
    verifier = make_verifier()
    with pytest.raises(DiscoveryError) as info:
        verifier.verify(issuer.token(kid))
    assert "expected" in str(info.value)
    assert info.value.code == "discovery_failed"
    assert issuer.fetches == 0


def test_redirect_is_not_followed(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    kid = issuer.add_key()
    elsewhere = "https://attacker.example/jwks.json"
    issuer.routes[JWKS_URL] = lambda _r: httpx.Response(302, headers={"location": elsewhere})
    issuer.routes[elsewhere] = lambda _r: pytest.fail("redirect followed")
    verifier = make_verifier(jwks_url=JWKS_URL)
    with pytest.raises(JWKSUnavailableError, match="redirects are not followed"):
        verifier.verify(issuer.token(kid))


def test_redirect_is_not_followed_even_with_a_permissive_client(issuer: FakeIssuer) -> None:
    kid = issuer.add_key()
    issuer.routes[JWKS_URL] = lambda _r: httpx.Response(
        301, headers={"location": "https://attacker.example/"}
    )
    with httpx.Client(transport=issuer.transport(), follow_redirects=True) as client:
        with Verifier(
            algorithms=["ES256"],
            jwks_url=JWKS_URL,
            client=client,
            clock=issuer.clock,
            cache=CacheOptions(background=False),
        ) as verifier:
            with pytest.raises(JWKSUnavailableError, match="301"):
                verifier.verify(issuer.token(kid))
        assert not client.is_closed, "an injected client belongs to the caller"


def test_oversized_response_is_refused(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    kid = issuer.add_key()
    huge = b'{"keys": [], "padding": "' + b"x" * (600 * 1024) + b'"}'
    issuer.routes[JWKS_URL] = lambda _r: httpx.Response(200, content=huge)
    verifier = make_verifier(jwks_url=JWKS_URL)
    with pytest.raises(JWKSUnavailableError, match="exceeds 524288 bytes"):
        verifier.verify(issuer.token(kid))


# -- against a real server over 127.0.0.1 --------------------------------------------------------


def _serve_jwks(server: LocalServer, issuer: FakeIssuer, max_age: int = 300) -> None:
    def jwks(h: _Handler) -> None:
        body = issuer.jwks_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {"etag": etag, "cache-control": f"public, max-age={max_age}"}
        if h.headers.get("if-none-match") == etag:
            h.reply(304, headers=headers)
        else:
            h.reply(200, body, {"content-type": "application/jwk-set+json", **headers})

    server.routes["/.well-known/jwks.json"] = jwks
    server.routes["/.well-known/openid-configuration"] = lambda h: h.reply(
        200,
        orjson.dumps({"issuer": server.base, "jwks_uri": server.base + "/.well-known/jwks.json"}),
    )


def test_real_server_conditional_get_and_304(server: LocalServer, clock: FakeClock) -> None:
    issuer = FakeIssuer(clock)
    kid = issuer.add_key()
    _serve_jwks(server, issuer)
    with Verifier(
        algorithms=["ES256"], issuer=server.base, clock=clock, cache=CacheOptions(background=False)
    ) as verifier:
        token = issuer.signers[kid].sign({"iss": server.base, "exp": clock.now() + 3600})
        verifier.verify(token)
        clock.advance(301)
        verifier.verify(token)
        clock.advance(301)
        verifier.verify(token)
        snap = verifier.metrics.snapshot()
    jwks_hits = [hdrs for path, hdrs in server.hits if path == "/.well-known/jwks.json"]
    assert len(jwks_hits) == 3
    assert "If-None-Match" not in jwks_hits[0]
    assert jwks_hits[1]["If-None-Match"] == jwks_hits[2]["If-None-Match"]
    assert snap.not_modified == 2 and snap.fetch_errors == 0


def test_real_server_redirect_not_followed(server: LocalServer, clock: FakeClock) -> None:
    issuer = FakeIssuer(clock)
    issuer.add_key()
    _serve_jwks(server, issuer)
    server.routes["/moved"] = lambda h: h.reply(
        307, headers={"location": server.base + "/.well-known/jwks.json"}
    )
    with JWKSCache(
        jwks_url=server.base + "/moved", clock=clock, cache=CacheOptions(background=False)
    ) as cache:
        with pytest.raises(JWKSUnavailableError, match="307"):
            cache.get()
    assert server.paths() == ["/moved"]


def test_real_server_size_cap_stops_reading_an_endless_body(
    server: LocalServer, clock: FakeClock
) -> None:
    sent: list[int] = []

    def endless(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        chunk = b"x" * 16384
        try:
            while not server.stopping.is_set() and len(sent) < 10_000:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent.append(len(chunk))
        except OSError:
            pass  # the client hung up, as it should
        h.close_connection = True

    server.routes["/endless"] = endless
    started = time.monotonic()
    with JWKSCache(
        jwks_url=server.base + "/endless",
        clock=clock,
        http=HTTPOptions(max_response_bytes=64 * 1024),
        cache=CacheOptions(background=False),
    ) as cache:
        with pytest.raises(JWKSUnavailableError, match="exceeds 65536 bytes"):
            cache.get()
    assert time.monotonic() - started < 5
    assert len(sent) < 10_000, "the client must stop reading, not drain the stream"


def test_real_server_declared_oversize_is_not_read(server: LocalServer, clock: FakeClock) -> None:
    server.routes["/big"] = lambda h: h.reply(200, b"{" + b" " * 200_000 + b"}")
    with JWKSCache(
        jwks_url=server.base + "/big",
        clock=clock,
        http=HTTPOptions(max_response_bytes=100_000),
        cache=CacheOptions(background=False),
    ) as cache:
        with pytest.raises(JWKSUnavailableError, match="exceeds"):
            cache.get()


def test_real_server_short_timeout(server: LocalServer, clock: FakeClock) -> None:
    release = threading.Event()

    def slow(h: _Handler) -> None:
        release.wait(5)
        h.reply(200, b'{"keys": []}')

    server.routes["/slow"] = slow
    started = time.monotonic()
    try:
        with JWKSCache(
            jwks_url=server.base + "/slow",
            clock=clock,
            http=HTTPOptions(timeout=0.3),
            cache=CacheOptions(background=False),
        ) as cache:
            with pytest.raises(JWKSUnavailableError, match="Timeout"):
                cache.get()
    finally:
        release.set()
    assert time.monotonic() - started < 3
