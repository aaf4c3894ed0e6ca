"""Safe HTTP for the verifier: URL checks, capped reads, no redirects, conditional JWKS GET."""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from keyturn.errors import ConfigError, InvalidInputError, JWKSUnavailableError
from keyturn.tokens import KeySet
from keyturn.verifier._options import HTTPOptions

USER_AGENT = "keyturn-verifier/0.1"
JWKS_ACCEPT = "application/jwk-set+json, application/json;q=0.9"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|=|$)", re.IGNORECASE)


class DiscoveryError(JWKSUnavailableError):
    """The issuer's discovery document is unusable (unreachable, malformed or wrong issuer)."""

    code = "discovery_failed"


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


def parse_max_age(cache_control: str | None) -> float | None:
    """``max-age`` from a ``Cache-Control`` header; ``no-cache``/``no-store`` count as 0."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Response:
    """The parts of an HTTP response the verifier looks at, body already capped."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes


def _request_kwargs(opts: HTTPOptions) -> dict[str, Any]:
    # Passed per request so an injected client's own settings cannot turn these off.
    return {"follow_redirects": False, "timeout": httpx.Timeout(opts.timeout)}


class ResponseTooLargeError(JWKSUnavailableError):
    """A response over ``HTTPOptions.max_response_bytes`` (same code: the set is unavailable)."""


def _too_large(url: str, opts: HTTPOptions) -> JWKSUnavailableError:
    return ResponseTooLargeError(
        f"response from {url} exceeds {opts.max_response_bytes} bytes; not read further",
        url=url,
    )


def _declared_too_large(response: httpx.Response, opts: HTTPOptions) -> bool:
    declared = response.headers.get("content-length")
    return bool(declared and declared.isdigit() and int(declared) > opts.max_response_bytes)


def get_sync(
    client: httpx.Client, url: str, headers: dict[str, str], opts: HTTPOptions
) -> Response:
    """GET ``url``; the body is read in chunks and abandoned past the size cap."""
    # identity: the size cap counts wire bytes; a compressed body could inflate far past it.
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
    try:
        with client.stream("GET", url, headers=headers, **_request_kwargs(opts)) as response:
            if _declared_too_large(response, opts):
                raise _too_large(url, opts)
            chunks: list[bytes] = []
            size = 0
            # iter_bytes yields decoded content, so a small gzip bomb is capped too.
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > opts.max_response_bytes:
                    raise _too_large(url, opts)
                chunks.append(chunk)
            return Response(url, response.status_code, response.headers, b"".join(chunks))
    except httpx.HTTPError as exc:
        raise JWKSUnavailableError(f"GET {url} failed: {exc!r}", url=url) from None


async def get_async(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], opts: HTTPOptions
) -> Response:
    """Async twin of ``get_sync``."""
    # identity: the size cap counts wire bytes; a compressed body could inflate far past it.
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
    try:
        async with client.stream("GET", url, headers=headers, **_request_kwargs(opts)) as response:
            if _declared_too_large(response, opts):
                raise _too_large(url, opts)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > opts.max_response_bytes:
                    raise _too_large(url, opts)
                chunks.append(chunk)
            return Response(url, response.status_code, response.headers, b"".join(chunks))
    except httpx.HTTPError as exc:
        raise JWKSUnavailableError(f"GET {url} failed: {exc!r}", url=url) from None


def check_status(response: Response, *, allow_304: bool = False) -> None:
    """Raise ``JWKSUnavailableError`` unless the status is 200 (or 304 when expected)."""
    if response.status == 200 or (allow_304 and response.status == 304):
        return
    if 300 <= response.status < 400:
        where = response.headers.get("location", "?")
        raise JWKSUnavailableError(
            f"GET {response.url} answered {response.status} to {where}; redirects are not "
            "followed (configure the final URL)",
            url=response.url,
            status=response.status,
        )
    raise JWKSUnavailableError(
        f"GET {response.url} answered {response.status}", url=response.url, status=response.status
    )


def parse_json_object(response: Response, what: str) -> dict[str, Any]:
    """The body as a JSON object, or ``JWKSUnavailableError``."""
    try:
        doc = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        raise JWKSUnavailableError(f"{what} at {response.url} is not JSON") from None
    if not isinstance(doc, dict):
        raise JWKSUnavailableError(f"{what} at {response.url} is not a JSON object")
    return doc


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the verifier uses from an OpenID Provider configuration document."""

    issuer: str
    jwks_uri: str
    revocations_uri: str | None = None
    revocations_stream_uri: str | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(response: Response, issuer: str) -> Discovery:
    """Check the document names exactly ``issuer`` (OpenID Discovery 1.0 section 4.3)."""
    try:
        check_status(response)
        doc = parse_json_object(response, "discovery document")
    except JWKSUnavailableError as exc:
        raise DiscoveryError(exc.detail, **exc.extra) from None
    if doc.get("issuer") != issuer:
        # A document for another issuer would hand us that issuer's keys: refuse, never guess.
        raise DiscoveryError(
            f"discovery document names issuer {doc.get('issuer')!r}, expected {issuer!r}"
        )
    jwks_uri = doc.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise DiscoveryError(f"discovery document at {response.url} has no jwks_uri")
    try:
        check_url(jwks_uri, "jwks_uri")
    except ConfigError as exc:
        raise DiscoveryError(exc.detail) from None

    def optional(name: str) -> str | None:
        value = doc.get(name)
        if not isinstance(value, str):
            return None
        try:
            return check_url(value, name)
        except ConfigError:
            return None

    return Discovery(
        issuer,
        jwks_uri,
        optional("keyturn_revocations_uri"),
        optional("keyturn_revocations_stream_uri"),
    )


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful JWKS fetch: a new set (``keyset``) or a 304 (``keyset is None``)."""

    kind: Literal["ok", "not_modified"]
    keyset: KeySet | None
    etag: str | None
    max_age: float | None
    elapsed: float


def jwks_headers(etag: str | None) -> dict[str, str]:
    headers = {"Accept": JWKS_ACCEPT}
    if etag is not None:
        headers["If-None-Match"] = etag
    return headers


def interpret_jwks(response: Response, sent_etag: str | None, started: float) -> FetchResult:
    """Turn a JWKS response into a ``FetchResult`` or raise ``JWKSUnavailableError``."""
    elapsed = time.perf_counter() - started
    check_status(response, allow_304=sent_etag is not None)
    max_age = parse_max_age(response.headers.get("cache-control"))
    if response.status == 304:
        return FetchResult("not_modified", None, sent_etag, max_age, elapsed)
    try:
        keyset = KeySet.from_jwks(response.body)
    except InvalidInputError as exc:
        raise JWKSUnavailableError(f"JWKS at {response.url} is unusable: {exc}") from None
    if not keyset.keys and not keyset.anonymous:
        # An issuer that signs always publishes a key; an empty set is far likelier a broken
        # deploy or proxy than intent, and replacing a good set with it would reject everyone.
        raise JWKSUnavailableError(f"JWKS at {response.url} has no usable signing key")
    return FetchResult("ok", keyset, response.headers.get("etag"), max_age, elapsed)
