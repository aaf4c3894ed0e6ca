"""``JWKSCache``: a key set kept fresh by a background thread, fetched one flight at a time."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import httpx

from keyturn.clock import Clock, SystemClock
from keyturn.errors import JWKSUnavailableError, KeyturnError
from keyturn.jwks_http import discovery_url
from keyturn.tokens import KeySet
from keyturn.verifier._core import CacheCore, CacheStatus
from keyturn.verifier._http import (
    get_sync,
    interpret_jwks,
    jwks_headers,
    parse_discovery,
)
from keyturn.verifier._metrics import EventHook, StaleHook, VerifierMetrics, logger
from keyturn.verifier._options import (
    DEFAULT_BACKOFF,
    DEFAULT_CACHE_OPTIONS,
    DEFAULT_HTTP_OPTIONS,
    DEFAULT_UNKNOWN_KID_OPTIONS,
    Backoff,
    CacheOptions,
    HTTPOptions,
    JWKSConfig,
    UnknownKidOptions,
)


class _Flight:
    """One fetch in progress; every caller that wants a fetch waits on the same one."""

    __slots__ = ("done", "error", "thread")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: KeyturnError | None = None
        self.thread: threading.Thread | None = None


class JWKSCache:
    """A thread-safe cache of one issuer's JWKS.

    Configure with ``issuer`` (discovery: ``{issuer}/.well-known/openid-configuration`` must
    name exactly that issuer, then its ``jwks_uri`` is used) or with ``jwks_url`` (or both: the
    URL is used directly and the issuer is only recorded).

    - The whole set is cached and refreshed by a background thread ahead of expiry, with jitter.
    - One fetch at a time (single flight); it runs in its own thread, so a caller that stops
      waiting (``CacheOptions.wait``) never cancels it.
    - ``Cache-Control: max-age`` is honoured within ``CacheOptions`` floor and ceiling; fetches
      are conditional (``If-None-Match``); a 304 keeps the set and restarts its lifetime.
    - A failed fetch never wipes the set: it is served stale up to ``stale_if_error`` past
      expiry (``on_stale`` is called), and fetches back off exponentially with jitter.
    - Revoked kids (``revoke``) are dropped at once and stay refused whatever a later fetch says.

    Pass ``client`` (an ``httpx.Client`` you own and close) or ``transport`` (e.g.
    ``httpx.MockTransport`` in tests); redirects are never followed either way. ``clock`` and
    ``rng`` make timing deterministic in tests. Close with ``close()`` or a ``with`` block.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        jwks_url: str | None = None,
        cache: CacheOptions = DEFAULT_CACHE_OPTIONS,
        backoff: Backoff = DEFAULT_BACKOFF,
        unknown_kid: UnknownKidOptions = DEFAULT_UNKNOWN_KID_OPTIONS,
        http: HTTPOptions = DEFAULT_HTTP_OPTIONS,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: VerifierMetrics | None = None,
        on_event: EventHook | None = None,
        on_stale: StaleHook | None = None,
    ) -> None:
        config = JWKSConfig(
            issuer=issuer,
            jwks_url=jwks_url,
            cache=cache,
            backoff=backoff,
            unknown_kid=unknown_kid,
            http=http,
            clock=clock or SystemClock(),
            rng=rng or random.Random(),
            metrics=metrics or VerifierMetrics(),
            on_event=on_event,
            on_stale=on_stale,
        )
        self._setup(config, client, transport)

    @classmethod
    def from_config(
        cls,
        config: JWKSConfig,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> Self:
        """A cache from an already checked ``JWKSConfig`` (how the verifiers pass theirs down)."""
        self = cls.__new__(cls)
        self._setup(config, client, transport)
        return self

    def _setup(
        self, config: JWKSConfig, client: httpx.Client | None, transport: httpx.BaseTransport | None
    ) -> None:
        self._core = CacheCore(config)
        http = config.http
        self._http = http
        self._owns_client = client is None
        self._client = client or httpx.Client(
            transport=transport, timeout=http.timeout, follow_redirects=False
        )
        self._flight_lock = threading.Lock()
        self._flight: _Flight | None = None
        # A revocation arrived while a fetch was in flight: that fetch may have been answered
        # before the change, so another one follows it.
        self._again = False
        self._core.on_urgent = self._urgent
        self._discovery_lock = threading.Lock()
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None
        # True once the refresher runs (or is not wanted): get() then skips the check, and
        # the verifier may take a fresh set straight from ``core.fresh()`` without calling get().
        self.refresher_ready = False

    # -- public API ------------------------------------------------------------------------

    @property
    def issuer(self) -> str | None:
        """The configured issuer URL, if any."""
        return self._core.issuer

    @property
    def metrics(self) -> VerifierMetrics:
        return self._core.metrics

    @property
    def revoked(self) -> frozenset[str]:
        """Kids refused as revoked (from ``revoke`` or a revocation feed)."""
        return self._core.revoked

    def get(self, *, wait: float | None = None) -> KeySet:
        """The current key set: fresh, or stale within the hard limit while fetches fail.

        Loads the set on first use (waiting up to ``wait`` seconds, default
        ``CacheOptions.wait``). Raises ``JWKSUnavailableError`` when no usable set remains.
        """
        if not self.refresher_ready:
            self._ensure_refresher()
        core = self._core
        keyset = core.fresh(core.clock.now())
        if keyset is not None:
            return keyset
        flight = self._begin(force=False)
        if flight is not None:
            flight.done.wait(self._wait(wait))
        return core.usable(core.clock.now())

    def refresh_for_unknown_kid(
        self, kid: str, *, wait: float | None = None, fresh: bool = False
    ) -> KeySet | None:
        """A set that contains ``kid`` after at most one cooldown-limited refresh, else ``None``.

        Never waits on the cooldown: inside it (or inside a backoff, or for a kid a recent
        fresh set lacked) the answer is ``None`` at once. Joins a fetch already in flight.
        ``fresh``: the token says it was issued after the set was fetched (see
        ``UnknownKidOptions.fresh_cooldown``).
        """
        core = self._core
        now = core.clock.now()
        if core.unknown_verdict(kid, now, fresh=fresh) == "negative":
            return None
        with self._flight_lock:
            flight = self._flight
            if (
                flight is None
                and not self._closed.is_set()
                and core.take_unknown_budget(now, fresh=fresh)
            ):
                flight = self._start_locked()
        if flight is None:
            return None
        if not flight.done.wait(self._wait(wait)) or flight.error is not None:
            return None
        return core.after_unknown(kid, core.clock.now())

    def reload(self, *, wait: float | None = None) -> KeySet:
        """Fetch now (re-running discovery), ignoring backoff; raise if the fetch fails."""
        self._core.rediscover = True
        flight = self._begin(force=True)
        if flight is None:
            raise JWKSUnavailableError("the cache is closed")
        if not flight.done.wait(self._wait(wait)):
            raise JWKSUnavailableError("reload still in flight after the wait limit")
        if flight.error is not None:
            raise flight.error
        return self._core.usable(self._core.clock.now())

    def revoke(self, kids: Iterable[str], *, source: str = "api") -> list[str]:
        """Drop ``kids`` from the set at once and refuse them from now on; return the new ones."""
        return self._core.revoke(kids, source)

    def status(self) -> CacheStatus:
        """A snapshot of what is cached, how fresh it is and the last error."""
        return self._core.status()

    def close(self) -> None:
        """Stop the background thread, wait for a fetch in flight, close an owned client."""
        self._closed.set()
        with self._flight_lock:
            flight = self._flight
        for thread in (self._refresher, flight.thread if flight else None):
            if thread is not None and thread is not threading.current_thread():
                thread.join(self._http.timeout + 1.0)
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> JWKSCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    @property
    def core(self) -> CacheCore:
        return self._core

    def _wait(self, wait: float | None) -> float:
        return self._core.options.wait if wait is None else wait

    def _begin(self, *, force: bool) -> _Flight | None:
        """Join the flight in progress, or start one unless backing off (or ``force``)."""
        with self._flight_lock:
            if self._flight is not None:
                return self._flight
            if self._closed.is_set():
                return None
            if not force and self._core.in_backoff(self._core.clock.now()):
                return None
            return self._start_locked()

    def _start_locked(self) -> _Flight:
        flight = _Flight()
        thread = threading.Thread(
            target=self._run_flight, args=(flight,), name="keyturn-jwks-fetch", daemon=True
        )
        flight.thread = thread
        self._flight = flight
        thread.start()
        return flight

    def _run_flight(self, flight: _Flight) -> None:
        core = self._core
        started = time.perf_counter()
        try:
            try:
                url = self._jwks_url()
                etag = core.etag()
                response = get_sync(self._client, url, jwks_headers(etag), self._http)
                result = interpret_jwks(response, etag, started)
                core.record_success(result, url, core.clock.now())
            except KeyturnError as exc:
                flight.error = exc
            except Exception as exc:  # a bug or an odd transport: still a failed fetch
                logger.exception("keyturn JWKS fetch failed unexpectedly")
                flight.error = JWKSUnavailableError(f"fetch failed: {exc!r}")
            if flight.error is not None:
                core.record_failure(flight.error, time.perf_counter() - started, core.clock.now())
        finally:
            with self._flight_lock:
                self._flight = None
                if self._again and not self._closed.is_set():
                    self._again = False
                    self._start_locked()
            flight.done.set()

    def _urgent(self) -> None:
        """Fetch now whatever the cooldown or backoff say (called after a revocation)."""
        with self._flight_lock:
            if self._closed.is_set():
                return
            if self._flight is not None:
                self._again = True
                return
            self._start_locked()

    def _jwks_url(self) -> str:
        core = self._core
        if core.jwks_url is not None:
            return core.jwks_url
        # One discovery at a time: the revocation feed asks for it too (``discover``).
        with self._discovery_lock:
            if core.discovery is None or core.rediscover:
                assert core.issuer is not None
                response = get_sync(self._client, discovery_url(core.issuer), {}, self._http)
                core.discovery = parse_discovery(response, core.issuer)
                core.rediscover = False
            return core.discovery.jwks_uri

    def discover(self) -> None:
        """Run discovery now if it has not run (used by the revocation feed for its URLs)."""
        if self._core.issuer is not None and self._core.discovery is None:
            self._jwks_url()

    def _ensure_refresher(self) -> None:
        if self._refresher is not None or not self._core.options.background:
            self.refresher_ready = True
            return
        if self._closed.is_set():
            return
        with self._flight_lock:
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh_loop, name="keyturn-jwks-refresh", daemon=True
                )
                self._refresher.start()
            self.refresher_ready = True

    def _refresh_loop(self) -> None:
        core = self._core
        try:
            while not self._closed.wait(core.next_wake(core.clock.now())):
                if not core.refresh_due(core.clock.now()):
                    continue
                flight = self._begin(force=False)
                if flight is not None:
                    flight.done.wait()
        except Exception:  # never let the refresher die silently with a traceback on stderr
            logger.exception("keyturn JWKS refresher stopped")
