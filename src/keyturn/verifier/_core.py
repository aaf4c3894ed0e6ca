"""The cache's decisions without I/O, shared by the sync and async caches."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from keyturn.errors import JWKSUnavailableError, KeyturnError
from keyturn.tokens import KeySet
from keyturn.tokens.keyset import KidMap
from keyturn.verifier import _metrics as ev
from keyturn.verifier._http import Discovery, FetchResult
from keyturn.verifier._metrics import (
    StaleInfo,
    VerifierEvent,
    call_hook,
    logger,
)
from keyturn.verifier._options import JWKSConfig


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """What the cache holds and how fresh it is: the first thing to look at in a 401 wave."""

    url: str | None
    kids: tuple[str, ...]
    revoked: tuple[str, ...]
    etag: str | None
    fetched_at: float | None
    expires_at: float | None
    refresh_at: float | None
    stale_until: float | None
    failures: int
    retry_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class CachedSet:
    keyset: KeySet
    url: str
    etag: str | None
    fetched_at: float
    expires_at: float
    refresh_at: float
    stale_until: float


def _without(keyset: KeySet, kids: Iterable[str]) -> KeySet:
    drop = set(kids)
    if not drop.intersection(keyset.keys):
        return keyset
    return replace(keyset, keys=KidMap((k, v) for k, v in keyset.keys.items() if k not in drop))


UnknownVerdict = Literal["negative", "check"]


class CacheCore:
    """State and rules: freshness, stale-if-error, backoff, cooldown, negative cache, revocation.

    Every mutation happens under ``lock``; the key set is swapped as one reference, so a reader
    sees either the old set or the new one, never a mix.
    """

    def __init__(self, config: JWKSConfig) -> None:
        self.config = config
        self.issuer = config.issuer
        self.jwks_url = config.jwks_url
        self.options = config.cache
        self.backoff = config.backoff
        self.unknown_kid = config.unknown_kid
        self.clock = config.clock
        self.rng = config.rng
        self.metrics = config.metrics
        self.on_event = config.on_event
        self.on_stale = config.on_stale
        self.lock = threading.Lock()
        self.discovery: Discovery | None = None
        self.rediscover = False
        # The last good set with its times. Replaced whole under ``lock``, never mutated, so
        # fresh() and the verify hot path read it without the lock (one attribute read).
        self.cached: CachedSet | None = None
        self.revoked: frozenset[str] = frozenset()
        self._failures = 0
        self._retry_at = -math.inf
        self._last_error: str | None = None
        self._last_exc: JWKSUnavailableError | None = None
        self._last_unknown_fetch = -math.inf
        self._last_fresh_fetch = -math.inf
        self._negative: OrderedDict[str, float] = OrderedDict()
        # Set by the cache that owns this core: fetch the JWKS now (a revocation arrived). An
        # emergency is exactly when new keys appear, so it must not wait for a cooldown.
        self.on_urgent: Callable[[], None] | None = None

    # -- reading ---------------------------------------------------------------------------

    def fresh(self, now: float) -> KeySet | None:
        """The set if it is within its lifetime; lock-free (one attribute read)."""
        cached = self.cached
        if cached is not None and now < cached.expires_at:
            return cached.keyset
        return None

    def etag(self) -> str | None:
        cached = self.cached
        return cached.etag if cached is not None else None

    def in_backoff(self, now: float) -> bool:
        return now < self._retry_at

    def usable(self, now: float) -> KeySet:
        """The fresh set, else the stale set within the hard limit (calling ``on_stale``)."""
        cached = self.cached
        if cached is not None and now < cached.expires_at:
            return cached.keyset
        if cached is not None and now < cached.stale_until:
            self.metrics.stale_served()
            info = StaleInfo(
                cached.url, now - cached.expires_at, cached.stale_until - now, self._last_error
            )
            call_hook(self.on_stale, info)
            self.emit(ev.STALE, url=cached.url, expired_for=info.expired_for)
            return cached.keyset
        if cached is None:
            detail = "no key set has been fetched yet"
        else:
            detail = (
                f"the key set expired {now - cached.expires_at:.0f}s ago and is past its "
                f"stale-if-error limit of {self.options.stale_if_error:.0f}s"
            )
        if self._last_error:
            detail += f"; last fetch error: {self._last_error}"
        # Keep the most specific class (e.g. DiscoveryError) so the code names the cause.
        cls = type(self._last_exc) if self._last_exc is not None else JWKSUnavailableError
        raise cls(detail, url=self.url())

    def url(self) -> str | None:
        if self.jwks_url is not None:
            return self.jwks_url
        return self.discovery.jwks_uri if self.discovery is not None else None

    def next_wake(self, now: float) -> float:
        """Seconds until the background refresher should act (at least a short pause)."""
        with self.lock:
            cached = self.cached
            due = cached.refresh_at if cached is not None else now
            due = max(due, self._retry_at)
        return max(due - now, 0.05)

    def refresh_due(self, now: float) -> bool:
        """Whether the background refresher should fetch now: no set yet, or past ``refresh_at``.

        Re-checked after every wake: the refresher may have slept on an older schedule (a first
        fetch that finished meanwhile, a 304 that restarted the lifetime).
        """
        with self.lock:
            cached = self.cached
            if cached is not None and now < cached.refresh_at:
                return False
            return now >= self._retry_at

    def unreachable_detail(self) -> str | None:
        """Why the key set cannot be refreshed right now (the last fetch failed), else None."""
        with self.lock:
            return self._last_error if self._failures else None

    def status(self) -> CacheStatus:
        with self.lock:
            c = self.cached
            return CacheStatus(
                url=self.url(),
                kids=tuple(sorted(c.keyset.keys)) if c else (),
                revoked=tuple(sorted(self.revoked)),
                etag=c.etag if c else None,
                fetched_at=c.fetched_at if c else None,
                expires_at=c.expires_at if c else None,
                refresh_at=c.refresh_at if c else None,
                stale_until=c.stale_until if c else None,
                failures=self._failures,
                retry_at=self._retry_at if math.isfinite(self._retry_at) else None,
                last_error=self._last_error,
            )

    # -- fetch outcomes --------------------------------------------------------------------

    def record_success(self, result: FetchResult, url: str, now: float) -> None:
        """Install a new set (or, on 304, keep the set and restart its lifetime)."""
        opts = self.options
        with self.lock:
            previous = self.cached
            lifetime = opts.lifetime(result.max_age)
            if result.keyset is None:
                if previous is None:  # 304 without a set: cannot happen, we sent no ETag.
                    raise JWKSUnavailableError("304 Not Modified without a cached key set")
                keyset = previous.keyset
            else:
                # Pushed revocations outlive any JWKS that still lists the key.
                keyset = _without(result.keyset, self.revoked)
                if previous is None or set(keyset.keys) != set(previous.keyset.keys):
                    # A new set: a kid remembered as missing may be in it, or in the next one
                    # (a key published just after the fetch that missed it). Forgetting the
                    # misses lets such a kid refresh again instead of failing for negative_ttl.
                    self._negative.clear()
            self.cached = CachedSet(
                keyset=keyset,
                url=url,
                etag=result.etag,
                fetched_at=now,
                expires_at=now + lifetime,
                refresh_at=now + opts.refresh_delay(lifetime, self.rng),
                stale_until=now + lifetime + opts.stale_if_error,
            )
            self._failures = 0
            self._retry_at = -math.inf
            self._last_error = None
            self._last_exc = None
        self.metrics.fetched(result.elapsed, not_modified=result.keyset is None)
        name = ev.NOT_MODIFIED if result.keyset is None else ev.FETCH
        self.emit(
            name, url=url, kids=tuple(sorted(keyset.keys)), max_age=lifetime, seconds=result.elapsed
        )

    def record_failure(self, error: KeyturnError, elapsed: float, now: float) -> None:
        """Back off; the cached set stays as it was (a failed fetch never wipes it)."""
        with self.lock:
            self._failures += 1
            delay = self.backoff.delay(self._failures, self.rng)
            self._retry_at = now + delay
            self._last_error = f"{error.code}: {error.detail}"
            self._last_exc = error if isinstance(error, JWKSUnavailableError) else None
            failures = self._failures
            # The jwks_uri may have moved: the next attempt (already backed off) rediscovers.
            self.rediscover = True
        self.metrics.fetch_failed(elapsed)
        self.emit(
            ev.FETCH_ERROR, url=self.url(), error=error.detail, failures=failures, retry_in=delay
        )

    # -- unknown kids ----------------------------------------------------------------------

    def issued_after_fetch(self, issued_at: object) -> bool:
        """Whether a token's (unverified) ``iat`` says it was signed after our set was fetched.

        Strictly after, with no leeway: a token issued before our last fetch names a kid that
        fetch already answered for, so another fetch would be wasted on a replay. (An issuer
        clock behind ours only loses the fast path, not correctness.)
        """
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            return False
        cached = self.cached
        return cached is None or issued_at > cached.fetched_at

    def unknown_verdict(self, kid: str, now: float, *, fresh: bool = False) -> UnknownVerdict:
        """``negative`` when the kid was missing from a recent fresh set: no refresh.

        A ``fresh`` token (issued after the set was fetched) is not held to a remembered miss.
        """
        self.metrics.unknown_kid()
        with self.lock:
            until = self._negative.get(kid)
            if until is not None and now < until and not fresh:
                negative = True
            else:
                negative = False
                if until is not None:
                    del self._negative[kid]
        self.emit(ev.UNKNOWN_KID, kid=kid, negative=negative)
        return "negative" if negative else "check"

    def take_unknown_budget(self, now: float, *, fresh: bool = False) -> bool:
        """True (and the cooldown restarts) if an unknown kid may trigger a fetch now.

        Never waits: inside the cooldown or the backoff the answer is simply no, except for a
        ``fresh`` token once per ``fresh_cooldown`` (see ``UnknownKidOptions``).
        """
        with self.lock:
            if now < self._retry_at:
                return False
            if now - self._last_unknown_fetch >= self.unknown_kid.cooldown:
                self._last_unknown_fetch = now
                self._last_fresh_fetch = now
                return True
            if fresh and now - self._last_fresh_fetch >= self.unknown_kid.fresh_cooldown:
                self._last_fresh_fetch = now
                return True
            return False

    def after_unknown(self, kid: str, now: float) -> KeySet | None:
        """After a fresh fetch: the set if it now has ``kid``, else remember the miss."""
        cached = self.cached
        if cached is not None and kid in cached.keyset.keys:
            return cached.keyset
        limit = self.unknown_kid.negative_cache_size
        if limit and self.unknown_kid.negative_ttl:
            with self.lock:
                self._negative[kid] = now + self.unknown_kid.negative_ttl
                self._negative.move_to_end(kid)
                while len(self._negative) > limit:
                    self._negative.popitem(last=False)
        return None

    def negative_size(self) -> int:
        return len(self._negative)

    # -- revocation ------------------------------------------------------------------------

    def revoke(self, kids: Iterable[str], source: str) -> list[str]:
        """Refuse ``kids`` from now on and drop them from the cached set at once."""
        with self.lock:
            new = sorted(set(kids) - self.revoked)
            if not new:
                return []
            self.revoked = self.revoked.union(new)
            cached = self.cached
            if cached is not None:
                self.cached = replace(cached, keyset=_without(cached.keyset, new))
            # A revocation comes with new keys (rotate-and-revoke promotes next, revoke-all
            # makes a fresh current): their first tokens must not meet a cooldown or a miss
            # remembered before the change.
            self._last_unknown_fetch = -math.inf
            self._last_fresh_fetch = -math.inf
            self._negative.clear()
        self.metrics.revoked(len(new))
        self.emit(ev.REVOKED, kids=tuple(new), source=source)
        urgent = self.on_urgent
        if urgent is not None:
            try:
                urgent()
            except Exception:  # never let a failed fetch start break the revocation itself
                logger.exception("keyturn: could not start the JWKS fetch after a revocation")
        return new

    def emit(self, name: str, **data: object) -> None:
        if self.on_event is not None:
            call_hook(self.on_event, VerifierEvent(name, data))
