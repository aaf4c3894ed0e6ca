"""Small frozen option objects for the verifier, each with ``DEFAULT_*`` constants."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from keyturn.clock import Clock, SystemClock
from keyturn.errors import ConfigError
from keyturn.jwks_http import check_url
from keyturn.verifier._metrics import EventHook, StaleHook, VerifierMetrics

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024

DEFAULT_MIN_MAX_AGE = 60.0
DEFAULT_MAX_MAX_AGE = 24 * 3600.0
DEFAULT_MAX_AGE = 300.0
DEFAULT_REFRESH_AHEAD = 0.25
DEFAULT_JITTER = 0.1
DEFAULT_STALE_IF_ERROR = 3600.0
DEFAULT_WAIT = 5.0

DEFAULT_BACKOFF_INITIAL = 1.0
DEFAULT_BACKOFF_MAXIMUM = 300.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0
DEFAULT_BACKOFF_JITTER = 0.5

DEFAULT_COOLDOWN = 30.0
DEFAULT_FRESH_COOLDOWN = 1.0
DEFAULT_NEGATIVE_CACHE_SIZE = 1024
DEFAULT_NEGATIVE_TTL = 300.0

# Short enough that a verifier with default options drops a revoked key within 15 s (the poll
# is jittered down by up to 10%, plus one conditional GET); a 304 costs the issuer little.
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_STREAM_READ_TIMEOUT = 60.0


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} number")


def _fraction(name: str, value: float, upper: float = 1.0) -> None:
    if not (0.0 <= value < upper):
        raise ConfigError(f"{name} must be in [0, {upper})")


@dataclass(frozen=True, kw_only=True, slots=True)
class HTTPOptions:
    """How the verifier talks HTTP: a short timeout and a response size cap.

    Redirects are never followed and plain HTTP is refused except to loopback; those are not
    options, because a verifier that can be pointed elsewhere can be fed an attacker's keys.
    """

    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        _positive("timeout", self.timeout)
        _positive("max_response_bytes", self.max_response_bytes)


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheOptions:
    """How long a fetched key set is trusted and when it is refreshed.

    - ``min_max_age`` / ``max_max_age``: the issuer's ``Cache-Control: max-age`` is clamped into
      this range (a floor so a ``max-age=0`` issuer cannot make every verification fetch, a
      ceiling so a new key is seen within a day whatever the issuer says).
    - ``default_max_age``: lifetime when the response has no ``max-age``.
    - ``refresh_ahead``: fraction of the lifetime before expiry at which the background refresh
      starts; ``jitter``: a random fraction of the lifetime taken off that moment, so verifiers
      started together do not refresh together.
    - ``stale_if_error``: seconds past expiry the last good set is still used while fetches
      fail (the hard limit); after that verification fails with ``jwks_unavailable``.
    - ``wait``: seconds a caller waits for an in-flight fetch (the fetch itself goes on).
    - ``background``: refresh ahead of expiry in a background thread or task.
    """

    min_max_age: float = DEFAULT_MIN_MAX_AGE
    max_max_age: float = DEFAULT_MAX_MAX_AGE
    default_max_age: float = DEFAULT_MAX_AGE
    refresh_ahead: float = DEFAULT_REFRESH_AHEAD
    jitter: float = DEFAULT_JITTER
    stale_if_error: float = DEFAULT_STALE_IF_ERROR
    wait: float = DEFAULT_WAIT
    background: bool = True

    def __post_init__(self) -> None:
        _positive("min_max_age", self.min_max_age)
        _positive("max_max_age", self.max_max_age)
        _positive("default_max_age", self.default_max_age)
        _positive("stale_if_error", self.stale_if_error, zero_ok=True)
        _positive("wait", self.wait)
        if self.min_max_age > self.max_max_age:
            raise ConfigError("min_max_age must not exceed max_max_age")
        _fraction("refresh_ahead", self.refresh_ahead)
        _fraction("jitter", self.jitter)
        if self.refresh_ahead + self.jitter >= 1.0:
            raise ConfigError("refresh_ahead + jitter must be below 1")

    def lifetime(self, max_age: float | None) -> float:
        """The issuer's ``max-age`` (or the default) clamped into ``[min, max]``."""
        value = self.default_max_age if max_age is None else max_age
        return min(max(value, self.min_max_age), self.max_max_age)

    def refresh_delay(self, lifetime: float, rng: random.Random) -> float:
        """Seconds after a fetch at which to refresh: ahead of expiry, minus random jitter."""
        return lifetime * (1.0 - self.refresh_ahead - self.jitter * rng.random())


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Exponential backoff with jitter after failed fetches (and SSE reconnects)."""

    initial: float = DEFAULT_BACKOFF_INITIAL
    maximum: float = DEFAULT_BACKOFF_MAXIMUM
    multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    jitter: float = DEFAULT_BACKOFF_JITTER

    def __post_init__(self) -> None:
        _positive("initial", self.initial)
        _positive("maximum", self.maximum)
        if self.multiplier < 1:
            raise ConfigError("multiplier must be at least 1")
        _fraction("jitter", self.jitter)

    def delay(self, failures: int, rng: random.Random) -> float:
        """Delay after ``failures`` consecutive failures (>= 1), jittered downwards."""
        exponent = min(max(failures - 1, 0), 64)
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, kw_only=True, slots=True)
class UnknownKidOptions:
    """Refresh on an unknown kid, at most once per ``cooldown``; remember misses.

    A kid still absent after a fresh fetch is remembered for ``negative_ttl`` seconds (at most
    ``negative_cache_size`` kids, oldest evicted first), so a client replaying an old token, or
    a flood of random kids, does not spend the refresh budget meant for a real new key.

    A token issued after the cached set was fetched (its ``iat``, strictly later) may still
    refresh once per ``fresh_cooldown`` inside the cooldown, past a remembered miss: that is the
    fresh current key of a ``revoke-all`` before the revocation reaches this verifier, the one
    case where a refresh is sure to be useful. Replayed old tokens never qualify, so the cost of
    a flood of forged fresh tokens is one conditional GET per ``fresh_cooldown``; set it to
    ``cooldown`` or more to turn the fast path off.
    """

    cooldown: float = DEFAULT_COOLDOWN
    negative_cache_size: int = DEFAULT_NEGATIVE_CACHE_SIZE
    negative_ttl: float = DEFAULT_NEGATIVE_TTL
    fresh_cooldown: float = DEFAULT_FRESH_COOLDOWN

    def __post_init__(self) -> None:
        _positive("fresh_cooldown", self.fresh_cooldown)
        _positive("cooldown", self.cooldown, zero_ok=True)
        _positive("negative_cache_size", self.negative_cache_size, zero_ok=True)
        _positive("negative_ttl", self.negative_ttl, zero_ok=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class RevocationFeed:
    """Subscribe to an issuer's revocation feed so a revoked key is dropped at once.

    ``mode="stream"`` keeps a Server-Sent Events connection open (pushes arrive within
    milliseconds); ``mode="poll"`` fetches the JSON document every ``poll_interval`` seconds
    with ``If-None-Match``. ``url`` overrides the feed URL (otherwise: the discovery document's
    ``keyturn_revocations_uri`` / ``keyturn_revocations_stream_uri``, else
    ``{issuer}/revocations.json`` / ``{issuer}/revocations/stream``). ``reconnect`` paces
    reconnects and retries after errors.

    ``when_advertised=True`` (what ``DEFAULT_REVOCATIONS``, the verifiers' default, sets) runs
    the feed only if the issuer's discovery document advertises one, and stays off quietly
    otherwise (or when the verifier is configured with ``jwks_url`` and so does no discovery).
    Every revocation the feed brings also makes the verifier fetch the JWKS at once, past the
    unknown-kid cooldown, so the fresh keys of a ``revoke-all`` verify on their first token.
    """

    mode: Literal["stream", "poll"] = "stream"
    url: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    read_timeout: float = DEFAULT_STREAM_READ_TIMEOUT
    reconnect: Backoff = Backoff(initial=0.5, maximum=60.0)
    when_advertised: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("stream", "poll"):
            raise ConfigError("mode must be 'stream' or 'poll'")
        _positive("poll_interval", self.poll_interval)
        _positive("read_timeout", self.read_timeout)


DEFAULT_HTTP_OPTIONS = HTTPOptions()
DEFAULT_CACHE_OPTIONS = CacheOptions()
DEFAULT_BACKOFF = Backoff()
DEFAULT_UNKNOWN_KID_OPTIONS = UnknownKidOptions()
# The verifiers' default: poll the issuer's advertised feed (pass ``revocations=None`` to opt out).
DEFAULT_REVOCATIONS = RevocationFeed(mode="poll", when_advertised=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class JWKSConfig:
    """Everything one issuer's key cache is built from, checked once and passed down.

    The public constructors (``Verifier``, ``AsyncVerifier``, ``JWKSCache``,
    ``AsyncJWKSCache``) keep their keyword arguments; each builds this value once and hands it
    to the cache and its ``CacheCore``, instead of every layer re-listing the keywords.
    ``clock``, ``rng`` and ``metrics`` are resolved here (system clock, a fresh ``Random``, new
    metrics) so every layer shares the same ones. The HTTP client is not part of it: it is a
    resource the sync and async twins own differently.
    """

    issuer: str | None = None
    jwks_url: str | None = None
    cache: CacheOptions = DEFAULT_CACHE_OPTIONS
    backoff: Backoff = DEFAULT_BACKOFF
    unknown_kid: UnknownKidOptions = DEFAULT_UNKNOWN_KID_OPTIONS
    http: HTTPOptions = DEFAULT_HTTP_OPTIONS
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    metrics: VerifierMetrics = field(default_factory=VerifierMetrics)
    on_event: EventHook | None = None
    on_stale: StaleHook | None = None

    def __post_init__(self) -> None:
        if self.issuer is None and self.jwks_url is None:
            raise ConfigError("configure the verifier with an issuer URL or a JWKS URL")
        if self.issuer is not None:
            check_url(self.issuer, "issuer")
        if self.jwks_url is not None:
            check_url(self.jwks_url, "jwks_url")
