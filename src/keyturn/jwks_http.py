"""The JWKS HTTP contract, owned once: URLs, ``Cache-Control``, plain-HTTP rule, capped GET.

The server writes this contract (documents, their paths and headers), the verifier and
``diagnose`` read it. Lean on purpose (httpx and the standard library only): the verifier's
light install imports it without the server's dependencies.

Caching semantics (RFC 9111) for a JWKS consumer:

- A verifier is a *private* cache (RFC 9111 section 1): its freshness lifetime is
  ``max-age``; ``s-maxage`` is for shared caches only (section 5.2.2.10), so a verifier
  ignores it while a CDN in front of the issuer uses it first (section 4.2.1).
- ``no-store`` (5.2.2.5) forbids keeping the set; unqualified ``no-cache`` (5.2.2.4) allows
  keeping it but never using it without revalidating. Both give a lifetime of 0: revalidate
  every time (a verifier's floor then bounds how often it really fetches). The *qualified*
  form ``no-cache="field"`` only restricts the named header fields, not the keys: ignored.
- A directive given twice: the first occurrence counts (4.2.1). A ``max-age`` whose value is
  not delta-seconds makes the response stale (4.2.1: "encouraged to consider the response
  stale"), i.e. a lifetime of 0, never the consumer's default. The quoted form ``"60"`` is
  accepted (5.2: recipients accept it though senders should not generate it).
- Directive names are case-insensitive (5.2).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from keyturn.errors import ConfigError

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
REVOCATIONS_PATH = "/revocations.json"
REVOCATIONS_STREAM_PATH = "/revocations/stream"
# Tenants other than the default one publish under /t/{tenant}/ on the same host.
TENANT_PREFIX = "/t/"

_DIRECTIVE = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:=\s*(\"[^\"]*\"|[^,\s]*))?\s*(?:,|$)")


# --- URLs ----------------------------------------------------------------------------------
def tenant_base_url(public_url: str, tenant: str, default_tenant: str) -> str:
    """Where a tenant's documents live (and its issuer): the default tenant at the root."""
    if tenant == default_tenant:
        return public_url
    return f"{public_url}{TENANT_PREFIX}{tenant}"


def split_tenant_path(path: str) -> tuple[str, str] | None:
    """``/t/{tenant}/{rest}`` -> ``(tenant, rest)``; None when ``path`` is not under a tenant."""
    if not path.startswith(TENANT_PREFIX):
        return None
    tenant, sep, rest = path[len(TENANT_PREFIX) :].partition("/")
    if not sep or not tenant:
        return None
    return tenant, rest


def _under(issuer: str, path: str) -> str:
    return issuer.rstrip("/") + path


def discovery_url(issuer: str) -> str:
    """``{issuer}/.well-known/openid-configuration`` (OpenID Discovery 1.0 section 4)."""
    return _under(issuer, DISCOVERY_PATH)


def jwks_url(issuer: str) -> str:
    """The JWKS a keyturn issuer publishes (what its discovery document names as jwks_uri)."""
    return _under(issuer, JWKS_PATH)


def revocations_url(issuer: str) -> str:
    return _under(issuer, REVOCATIONS_PATH)


def revocations_stream_url(issuer: str) -> str:
    return _under(issuer, REVOCATIONS_STREAM_PATH)


# --- plain HTTP only to loopback -----------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: the only hosts plain HTTP may reach."""
    host = host.strip("[]").lower()
    # Only the name itself: whether *.localhost resolves to loopback is up to the resolver.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """``is_loopback`` of the URL's host (False for anything unparsable)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return is_loopback(host or "")


def plain_http_refused(url: str) -> bool:
    """True for ``http://`` to a host that is not loopback: anyone on the path could swap keys."""
    return url.startswith("http://") and not is_loopback_url(url)


def check_url(url: str, what: str) -> str:
    """Return ``url`` if it is HTTPS, or HTTP to a loopback host; raise ``ConfigError`` otherwise.

    Plain HTTP anywhere else would let anyone on the path substitute their own keys.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{what} is not a URL: {url!r}") from None
    if not parts.hostname:
        raise ConfigError(f"{what} has no host: {url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{what} must not carry credentials")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    raise ConfigError(f"{what} must use https (plain http only to loopback): {url!r}")


# --- Cache-Control -------------------------------------------------------------------------
def format_cache_control(max_age: int) -> str:
    """The server's header: the same fixed lifetime for every fetch, cacheable by anyone.

    Never "until the next rotation": pre-publication (C + S) is what makes a plain max-age safe.
    """
    return f"public, max-age={max(0, int(max_age))}"


@dataclass(frozen=True)
class CacheControl:
    """The ``Cache-Control`` directives that matter for a JWKS, as the header states them.

    ``max_age`` / ``s_maxage`` are None when absent *or* invalid (``*_invalid`` tells which).
    """

    raw: str | None
    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    max_age_invalid: bool = False
    s_maxage_invalid: bool = False

    @property
    def lifetime(self) -> int | None:
        """The longest lifetime the header states for any cache: ``max(max-age, s-maxage)``.

        A question about the caches in front of an issuer (a CDN uses ``s-maxage``, a
        verifier ``max-age``); it ignores ``no-cache``/``no-store``, which callers check apart.
        """
        values = [v for v in (self.max_age, self.s_maxage) if v is not None]
        return max(values) if values else None

    def freshness_lifetime(self, *, shared: bool = False) -> int | None:
        """Seconds a cache may use the set without revalidating (RFC 9111 section 4.2.1).

        None when the header states no lifetime (the consumer applies its own default).
        ``shared=False`` is a verifier; ``shared=True`` a CDN or proxy.
        """
        if self.no_store or self.no_cache:
            return 0
        if shared and (self.s_maxage is not None or self.s_maxage_invalid):
            return 0 if self.s_maxage is None else self.s_maxage
        if self.max_age_invalid:
            return 0
        return self.max_age

    def to_dict(self) -> dict[str, object]:
        return {
            "raw": self.raw,
            "max_age": self.max_age,
            "s_maxage": self.s_maxage,
            "no_store": self.no_store,
            "no_cache": self.no_cache,
            "private": self.private,
        }


def _delta_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip('"')
    return int(value) if value.isascii() and value.isdigit() else None


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse a ``Cache-Control`` value (semantics in this module's docstring); never raises."""
    if value is None:
        return CacheControl(None)
    found: dict[str, str | None] = {}
    for m in _DIRECTIVE.finditer(value):
        name = m.group(1)
        if name and name.lower() not in found:  # the first occurrence counts
            found[name.lower()] = m.group(2)
    max_age = _delta_seconds(found.get("max-age"))
    s_maxage = _delta_seconds(found.get("s-maxage"))
    return CacheControl(
        value,
        max_age=max_age,
        s_maxage=s_maxage,
        no_store="no-store" in found,
        # no-cache="field" only restricts those header fields (RFC 9111 5.2.2.4, qualified).
        no_cache="no-cache" in found and found["no-cache"] is None,
        private="private" in found,
        max_age_invalid="max-age" in found and max_age is None,
        s_maxage_invalid="s-maxage" in found and s_maxage is None,
    )


# --- the size-capped GET -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CappedResponse:
    """A response read up to a size cap: ``body`` is None when it was larger (not read on).

    A redirect's body is never read (``body == b""``): nothing in it is used.
    """

    url: str
    status: int
    headers: httpx.Headers
    body: bytes | None

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308) and "location" in self.headers


def _headers(headers: dict[str, str] | None) -> dict[str, str]:
    # identity: the cap counts wire bytes; a compressed body could inflate far past it.
    return {"Accept-Encoding": "identity", **(headers or {})}


def _declared_too_large(response: httpx.Response, max_bytes: int) -> bool:
    declared = response.headers.get("content-length")
    return bool(declared and declared.isdigit() and int(declared) > max_bytes)


def get_capped(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> CappedResponse:
    """GET ``url`` once, no redirects followed, the body streamed and abandoned past ``max_bytes``.

    Transport failures raise ``httpx.HTTPError``: the caller words them.
    """
    with client.stream(
        "GET", url, headers=_headers(headers), timeout=httpx.Timeout(timeout),
        follow_redirects=False,  # passed per request: an injected client cannot turn it off
    ) as response:  # fmt: skip
        out = CappedResponse(url, response.status_code, response.headers, b"")
        if out.is_redirect:
            return out
        if _declared_too_large(response, max_bytes):
            return CappedResponse(url, response.status_code, response.headers, None)
        chunks: list[bytes] = []
        size = 0
        # iter_bytes yields decoded content, so a small gzip bomb is capped too.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return CappedResponse(url, response.status_code, response.headers, None)
            chunks.append(chunk)
        return CappedResponse(url, response.status_code, response.headers, b"".join(chunks))


async def aget_capped(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 (httpx's per-request timeout, passed through)
    headers: dict[str, str] | None = None,
) -> CappedResponse:
    """Async twin of :func:`get_capped`."""
    async with client.stream(
        "GET", url, headers=_headers(headers), timeout=httpx.Timeout(timeout),
        follow_redirects=False,
    ) as response:  # fmt: skip
        out = CappedResponse(url, response.status_code, response.headers, b"")
        if out.is_redirect:
            return out
        if _declared_too_large(response, max_bytes):
            return CappedResponse(url, response.status_code, response.headers, None)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return CappedResponse(url, response.status_code, response.headers, None)
            chunks.append(chunk)
        return CappedResponse(url, response.status_code, response.headers, b"".join(chunks))
