"""Careful HTTP for diagnosis: short timeout, no silent redirects, a response size cap.

Diagnosis fetches URLs an operator typed during an incident, so it behaves like a safe verifier
(DESIGN.md 6.8) and reports what it saw instead of hiding it: a redirect is a finding, not a
hop taken quietly, because verifiers that refuse redirects will fail where a browser works.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from keyturn.jwks_http import CacheControl as CacheControl  # re-exported
from keyturn.jwks_http import get_capped
from keyturn.jwks_http import parse_cache_control as parse_cache_control  # re-exported

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
            resp = get_capped(
                client, current, max_bytes=max_bytes, timeout=timeout, headers=headers
            )
        except httpx.TimeoutException:
            return Fetch(current, error=f"timed out after {timeout:g}s", redirects=tuple(redirects))
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return Fetch(current, error=f"cannot connect: {reason}", redirects=tuple(redirects))
        picked = {k: resp.headers[k] for k in REPORTED_HEADERS if k in resp.headers}
        if resp.is_redirect:
            location = urljoin(current, resp.headers.get("location", ""))
            redirects.append((resp.status, location))
            if not follow_redirects:
                return Fetch(
                    current,
                    resp.status,
                    picked,
                    error=(
                        f"HTTP {resp.status} redirect to {location}; verifiers that "
                        "refuse redirects (as they should) fail here"
                    ),
                    redirects=tuple(redirects),
                )
            current = location
            continue
        if resp.body is None:
            return Fetch(
                current,
                resp.status,
                picked,
                error=f"response larger than {max_bytes} bytes; not read further",
                redirects=tuple(redirects),
            )
        error = None if resp.status == 200 else f"HTTP {resp.status}"
        return Fetch(
            current,
            resp.status,
            picked,
            resp.body,
            error,
            tuple(redirects),
            (time.perf_counter() - started) * 1000,
        )
    return Fetch(current, error=f"more than {MAX_REDIRECTS} redirects", redirects=tuple(redirects))
