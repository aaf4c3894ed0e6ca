"""Safe HTTP for the verifier: capped reads, no redirects, conditional JWKS GET.

The contract itself (URL rules, ``Cache-Control``, the capped GET) lives in
``keyturn.jwks_http``; this module adds the verifier's error wording, discovery parsing and
the conditional JWKS fetch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from keyturn.errors import (
    ConfigError,
    InvalidInputError,
    JWKSUnavailableError,
    ResponseTooLargeError,
)
from keyturn.errors import DiscoveryError as DiscoveryError  # re-exported
from keyturn.jwks_http import (
    CappedResponse,
    aget_capped,
    check_url,
    get_capped,
    parse_cache_control,
)
from keyturn.tokens import KeySet
from keyturn.verifier._options import HTTPOptions

USER_AGENT = "keyturn-verifier/0.1"
JWKS_ACCEPT = "application/jwk-set+json, application/json;q=0.9"


def parse_max_age(cache_control: str | None) -> float | None:
    """The verifier's lifetime for a ``Cache-Control`` header: a private cache's (RFC 9111).

    None when the header states none; ``no-cache``/``no-store`` (and an invalid ``max-age``)
    give 0, which the ``CacheOptions`` floor then bounds. Semantics: ``keyturn.jwks_http``.
    """
    lifetime = parse_cache_control(cache_control).freshness_lifetime(shared=False)
    return None if lifetime is None else float(lifetime)


@dataclass(frozen=True, slots=True)
class Response:
    """The parts of an HTTP response the verifier looks at, body already capped."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes


def _too_large(url: str, opts: HTTPOptions) -> JWKSUnavailableError:
    return ResponseTooLargeError(
        f"response from {url} exceeds {opts.max_response_bytes} bytes; not read further",
        url=url,
    )


def _response(capped: CappedResponse, opts: HTTPOptions) -> Response:
    if capped.body is None:
        raise _too_large(capped.url, opts)
    return Response(capped.url, capped.status, capped.headers, capped.body)


def get_sync(
    client: httpx.Client, url: str, headers: dict[str, str], opts: HTTPOptions
) -> Response:
    """GET ``url``; the body is read in chunks and abandoned past the size cap."""
    headers = {"User-Agent": USER_AGENT, **headers}
    try:
        capped = get_capped(
            client, url, max_bytes=opts.max_response_bytes, timeout=opts.timeout, headers=headers
        )
    except httpx.HTTPError as exc:
        raise JWKSUnavailableError(f"GET {url} failed: {exc!r}", url=url) from None
    return _response(capped, opts)


async def get_async(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], opts: HTTPOptions
) -> Response:
    """Async twin of ``get_sync``."""
    headers = {"User-Agent": USER_AGENT, **headers}
    try:
        capped = await aget_capped(
            client, url, max_bytes=opts.max_response_bytes, timeout=opts.timeout, headers=headers
        )
    except httpx.HTTPError as exc:
        raise JWKSUnavailableError(f"GET {url} failed: {exc!r}", url=url) from None
    return _response(capped, opts)


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
