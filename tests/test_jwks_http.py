"""The JWKS HTTP contract: URLs, the plain-HTTP rule, Cache-Control (RFC 9111), capped GET."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.jwks_http import (
    CacheControl,
    aget_capped,
    check_url,
    discovery_url,
    format_cache_control,
    get_capped,
    is_loopback,
    is_loopback_url,
    jwks_url,
    parse_cache_control,
    plain_http_refused,
    revocations_stream_url,
    revocations_url,
    split_tenant_path,
    tenant_base_url,
)
from keyturn.verifier._http import parse_max_age


# --- Cache-Control -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "private", "shared"),
    [
        pytest.param("public, max-age=600", 600, 600, id="max-age"),
        # s-maxage is for shared caches only (RFC 9111 5.2.2.10): a verifier ignores it.
        pytest.param("max-age=60, s-maxage=3600", 60, 3600, id="s-maxage-shared-only"),
        pytest.param("s-maxage=3600", None, 3600, id="s-maxage-alone"),
        # no-cache: store, but revalidate before every use (5.2.2.4) -> 0.
        pytest.param("max-age=600, no-cache", 0, 0, id="no-cache"),
        pytest.param("no-store", 0, 0, id="no-store"),
        pytest.param("NO-STORE", 0, 0, id="case-insensitive"),
        # The qualified form only restricts the named header fields, not the keys.
        pytest.param('no-cache="set-cookie", max-age=600', 600, 600, id="qualified-no-cache"),
        pytest.param('max-age="120", must-revalidate', 120, 120, id="quoted"),
        # Duplicates: the first occurrence counts (4.2.1).
        pytest.param("max-age=60, max-age=6000", 60, 60, id="first-wins"),
        # An invalid max-age makes the response stale (4.2.1), not "use your default".
        pytest.param("max-age=abc", 0, 0, id="invalid-stale"),
        pytest.param("max-age=-5", 0, 0, id="negative-stale"),
        pytest.param("private", None, None, id="no-lifetime"),
        pytest.param("", None, None, id="empty"),
    ],
)
def test_freshness_lifetime(raw: str, private: int | None, shared: int | None) -> None:
    cc = parse_cache_control(raw)
    assert cc.freshness_lifetime(shared=False) == private
    assert cc.freshness_lifetime(shared=True) == shared


def test_absent_header_states_nothing() -> None:
    assert parse_cache_control(None) == CacheControl(None)
    assert parse_cache_control(None).freshness_lifetime() is None


def test_stated_lifetime_is_the_longest_any_cache_may_keep() -> None:
    cc = parse_cache_control('max-age="60", s-maxage=3600, private')
    assert (cc.max_age, cc.s_maxage, cc.lifetime, cc.private) == (60, 3600, 3600, True)
    assert parse_cache_control("max-age=abc").lifetime is None


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        pytest.param("public, max-age=600", 600.0, id="max-age"),
        pytest.param("max-age=60, s-maxage=3600", 60.0, id="ignores-s-maxage"),
        pytest.param("no-cache", 0.0, id="no-cache"),
        pytest.param('no-cache="set-cookie", max-age=600', 600.0, id="qualified"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_verifier_reads_the_private_cache_lifetime(raw: str | None, seconds: float | None) -> None:
    assert parse_max_age(raw) == seconds


@pytest.mark.parametrize(
    ("max_age", "header"),
    [
        pytest.param(300, "public, max-age=300", id="plain"),
        pytest.param(0, "public, max-age=0", id="zero"),
        pytest.param(-3, "public, max-age=0", id="never-negative"),
    ],
)
def test_format_cache_control_round_trips(max_age: int, header: str) -> None:
    assert format_cache_control(max_age) == header
    assert parse_cache_control(header).freshness_lifetime() == max(0, max_age)


# --- URLs ----------------------------------------------------------------------------------
def test_tenant_urls() -> None:
    assert tenant_base_url("https://id.example", "default", "default") == "https://id.example"
    assert tenant_base_url("https://id.example", "acme", "default") == "https://id.example/t/acme"
    base = "https://id.example/t/acme"
    assert discovery_url(base + "/") == base + "/.well-known/openid-configuration"
    assert jwks_url(base) == base + "/.well-known/jwks.json"
    assert revocations_url(base) == base + "/revocations.json"
    assert revocations_stream_url(base) == base + "/revocations/stream"


@pytest.mark.parametrize(
    ("path", "split"),
    [
        pytest.param("/t/acme/.well-known/jwks.json", ("acme", ".well-known/jwks.json"), id="ok"),
        pytest.param("/t/acme", None, id="no-rest"),
        pytest.param("/t//jwks.json", None, id="no-tenant"),
        pytest.param("/.well-known/jwks.json", None, id="root"),
    ],
)
def test_split_tenant_path(path: str, split: tuple[str, str] | None) -> None:
    assert split_tenant_path(path) == split


# --- plain HTTP only to loopback -----------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LOCALHOST", True, id="case"),
        pytest.param("127.0.0.1", True, id="v4"),
        pytest.param("127.8.9.10", True, id="v4-block"),
        pytest.param("[::1]", True, id="v6"),
        pytest.param("evil.localhost", False, id="sub-localhost"),
        pytest.param("10.0.0.1", False, id="private"),
        pytest.param("example.com", False, id="name"),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert is_loopback_url(f"http://{host}:8080/x") is loopback
    assert plain_http_refused(f"http://{host}/x") is not loopback
    assert plain_http_refused(f"https://{host}/x") is False


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/jwks", id="plain-http"),
        pytest.param("https://user:pw@example.com/jwks", id="credentials"),
        pytest.param("https:///jwks", id="no-host"),
        pytest.param("ftp://example.com/jwks", id="scheme"),
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError):
        check_url(url, "jwks_url")


def test_check_url_accepts_https_and_loopback_http() -> None:
    assert check_url("https://example.com/j", "x") == "https://example.com/j"
    assert check_url("http://127.0.0.1:1/j", "x") == "http://127.0.0.1:1/j"


# --- the capped GET ------------------------------------------------------------------------
def _transport(body: bytes, status: int = 200, **headers: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(status, headers=headers, content=body)

    return httpx.MockTransport(handler)


def test_capped_get_reads_up_to_the_cap() -> None:
    with httpx.Client(transport=_transport(b"x" * 10)) as c:
        assert get_capped(c, "https://i.example/j", max_bytes=10, timeout=1).body == b"x" * 10
        assert get_capped(c, "https://i.example/j", max_bytes=9, timeout=1).body is None


def test_capped_get_trusts_a_too_large_content_length_without_reading() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "999999"}, content=b"{}")

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        assert get_capped(c, "https://i.example/j", max_bytes=100, timeout=1).body is None


def test_capped_get_never_follows_redirects() -> None:
    t = _transport(b"moved" * 100, 302, location="https://elsewhere.example/j")
    with httpx.Client(transport=t, follow_redirects=True) as c:
        r = get_capped(c, "https://i.example/j", max_bytes=10, timeout=1)
    assert (r.status, r.is_redirect, r.body) == (302, True, b"")


def test_async_capped_get() -> None:
    async def main() -> tuple[bytes | None, bytes | None]:
        async with httpx.AsyncClient(transport=_transport(b"abc")) as c:
            fits = await aget_capped(c, "https://i.example/j", max_bytes=3, timeout=1)
            over = await aget_capped(c, "https://i.example/j", max_bytes=2, timeout=1)
        return fits.body, over.body

    assert asyncio.run(main()) == (b"abc", None)
