"""keyturn's verifier: JWT verification against a cached, self-refreshing JWKS.

Works with only ``cryptography``, ``httpx`` and ``orjson`` installed. Middleware lives in
``keyturn.verifier.asgi`` and ``keyturn.verifier.wsgi``; a Prometheus collector in
``keyturn.verifier.prometheus``.
"""

from keyturn.errors import DiscoveryError, FeedError, FeedTooLargeError
from keyturn.verifier._async_cache import AsyncJWKSCache
from keyturn.verifier._cache import JWKSCache
from keyturn.verifier._core import CacheStatus
from keyturn.verifier._metrics import MetricsSnapshot, StaleInfo, VerifierEvent, VerifierMetrics
from keyturn.verifier._options import (
    DEFAULT_BACKOFF,
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_JITTER,
    DEFAULT_BACKOFF_MAXIMUM,
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_CACHE_OPTIONS,
    DEFAULT_COOLDOWN,
    DEFAULT_FRESH_COOLDOWN,
    DEFAULT_HTTP_OPTIONS,
    DEFAULT_JITTER,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_MAX_AGE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MIN_MAX_AGE,
    DEFAULT_NEGATIVE_CACHE_SIZE,
    DEFAULT_NEGATIVE_TTL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_REFRESH_AHEAD,
    DEFAULT_REVOCATIONS,
    DEFAULT_STALE_IF_ERROR,
    DEFAULT_STREAM_READ_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_UNKNOWN_KID_OPTIONS,
    DEFAULT_WAIT,
    Backoff,
    CacheOptions,
    HTTPOptions,
    RevocationFeed,
    UnknownKidOptions,
)
from keyturn.verifier._verifier import (
    DEFAULT_LEEWAY,
    DEFAULT_REQUIRED_CLAIMS,
    AsyncVerifier,
    Verifier,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_JITTER",
    "DEFAULT_BACKOFF_MAXIMUM",
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_CACHE_OPTIONS",
    "DEFAULT_COOLDOWN",
    "DEFAULT_FRESH_COOLDOWN",
    "DEFAULT_HTTP_OPTIONS",
    "DEFAULT_JITTER",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_MAX_AGE",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MIN_MAX_AGE",
    "DEFAULT_NEGATIVE_CACHE_SIZE",
    "DEFAULT_NEGATIVE_TTL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_REFRESH_AHEAD",
    "DEFAULT_REQUIRED_CLAIMS",
    "DEFAULT_REVOCATIONS",
    "DEFAULT_STALE_IF_ERROR",
    "DEFAULT_STREAM_READ_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_UNKNOWN_KID_OPTIONS",
    "DEFAULT_WAIT",
    "AsyncJWKSCache",
    "AsyncVerifier",
    "Backoff",
    "CacheOptions",
    "CacheStatus",
    "DiscoveryError",
    "FeedError",
    "FeedTooLargeError",
    "HTTPOptions",
    "JWKSCache",
    "MetricsSnapshot",
    "RevocationFeed",
    "StaleInfo",
    "UnknownKidOptions",
    "Verifier",
    "VerifierEvent",
    "VerifierMetrics",
]
