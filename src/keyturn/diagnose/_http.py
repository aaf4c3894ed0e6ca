"""Careful HTTP for diagnosis: short timeout, no silent redirects, a response size cap.

Diagnosis fetches URLs an operator typed during an incident, so it behaves like a safe verifier
(DESIGN.md 6.8) and reports what it saw instead of hiding it: a redirect is a finding, not a
hop taken quietly, because verifiers that refuse redirects will fail where a browser works.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 3

# Response headers worth showing: caching, identity of the copy, and who served it.
REPORTED_HEADERS = (
    "content-type",
    "cache-control",
    "expires",
    "etag",
    "last-modified",
    "age",
    "date",
    "via",
    "x-cache",
    "cf-cache-status",
    "x-served-by",
)

_DIRECTIVE = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:=\s*(\"[^\"]*\"|[^,\s]*))?\s*(?:,|$)")


@dataclass(frozen=True)
class CacheControl:
    """The parsed ``Cache-Control`` directives that matter for a JWKS."""

    raw: str | None
    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    private: bool = False

    @property
    def lifetime(self) -> int | None:
        """The longest time any cache may keep the set: shared caches use ``s-maxage`` first."""
        values = [v for v in (self.max_age, self.s_maxage) if v is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "max_age": self.max_age,
            "s_maxage": self.s_maxage,
            "no_store": self.no_store,
            "no_cache": self.no_cache,
            "private": self.private,
        }


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse directives leniently: an unparsable number counts as absent."""
    if value is None:
        return CacheControl(None)
    found: dict[str, str | None] = {}
    for m in _DIRECTIVE.finditer(value):
        if m.group(1):
            found[m.group(1).lower()] = m.group(2).strip('"') if m.group(2) else None

    def num(name: str) -> int | None:
        raw = found.get(name)
        if raw is None or not raw.isdigit():
            return None
        return int(raw)

    return CacheControl(
        value,
        max_age=num("max-age"),
        s_maxage=num("s-maxage"),
        no_store="no-store" in found,
        no_cache="no-cache" in found,
        private="private" in found,
    )


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Fetch:
    """One HTTP exchange as diagnosis saw it; ``error`` is set when no usable body arrived."""

    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = field(default=None, repr=False)
    error: str | None = None
    redirects: tuple[tuple[int, str], ...] = ()
    elapsed_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.body is not None

    @property
    def cache_control(self) -> CacheControl:
        return parse_cache_control(self.headers.get("cache-control"))

    @property
    def age(self) -> int | None:
        raw = self.headers.get("age", "").strip()
        return int(raw) if raw.isdigit() else None

    @property
    def date(self) -> float | None:
        return parse_http_date(self.headers.get("date"))

    @property
    def served_by_cache(self) -> bool:
        """Whether a cache between us and the origin answered (``Age`` or a cache-hit header)."""
        if self.age is not None:
            return True
        for name in ("x-cache", "cf-cache-status"):
            if "hit" in self.headers.get(name, "").lower():
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "error": self.error,
            "redirects": [{"status": s, "location": loc} for s, loc in self.redirects],
            "elapsed_ms": None if self.elapsed_ms is None else round(self.elapsed_ms, 1),
            "bytes": None if self.body is None else len(self.body),
            "headers": dict(self.headers),
        }


def fetch(
    client: httpx.Client,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    follow_redirects: bool = False,
    extra_headers: dict[str, str] | None = None,
) -> Fetch:
    """GET ``url`` and never raise: every failure becomes ``Fetch.error`` in plain words."""
    if urlsplit(url).scheme not in ("http", "https"):
        return Fetch(url, error=f"not an http(s) URL: {url!r}")
    headers = {"Accept": "application/json, application/jwk-set+json"}
    headers.update(extra_headers or {})
    redirects: list[tuple[int, str]] = []
    current = url
    started = time.perf_counter()  # a duration for the report, not a clock the logic uses
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with client.stream(
                "GET", current, headers=headers, timeout=timeout, follow_redirects=False
            ) as resp:
                picked = {k: resp.headers[k] for k in REPORTED_HEADERS if k in resp.headers}
                if resp.is_redirect:
                    location = urljoin(current, resp.headers.get("location", ""))
                    redirects.append((resp.status_code, location))
                    if not follow_redirects:
                        return Fetch(
                            current,
                            resp.status_code,
                            picked,
                            error=(
                                f"HTTP {resp.status_code} redirect to {location}; verifiers that "
                                "refuse redirects (as they should) fail here"
                            ),
                            redirects=tuple(redirects),
                        )
                    current = location
                    continue
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        return Fetch(
                            current,
                            resp.status_code,
                            picked,
                            error=f"response larger than {max_bytes} bytes; not read further",
                            redirects=tuple(redirects),
                        )
                error = None if resp.status_code == 200 else f"HTTP {resp.status_code}"
                return Fetch(
                    current,
                    resp.status_code,
                    picked,
                    bytes(body),
                    error,
                    tuple(redirects),
                    (time.perf_counter() - started) * 1000,
                )
        except httpx.TimeoutException:
            return Fetch(current, error=f"timed out after {timeout:g}s", redirects=tuple(redirects))
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return Fetch(current, error=f"cannot connect: {reason}", redirects=tuple(redirects))
    return Fetch(current, error=f"more than {MAX_REDIRECTS} redirects", redirects=tuple(redirects))
