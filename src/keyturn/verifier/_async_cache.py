"""``AsyncJWKSCache``: the asyncio twin of ``JWKSCache``, fetches as shielded tasks."""

from __future__ import annotations

import asyncio
import contextlib
import random
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
    get_async,
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

_Flight = asyncio.Task[KeyturnError | None]


class AsyncJWKSCache:
    """An asyncio, task-safe cache of one issuer's JWKS; same rules as ``JWKSCache``.

    The fetch runs as its own task: callers wait on it with ``asyncio.wait`` (which neither
    cancels it on timeout nor when the caller itself is cancelled), so one slow or cancelled
    request never aborts the fetch every other request is waiting for. Background refresh runs
    as a task started on first use in the running loop; close with ``await aclose()`` or
    ``async with``.
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
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """A cache from an already checked ``JWKSConfig`` (how the verifiers pass theirs down)."""
        self = cls.__new__(cls)
        self._setup(config, client, transport)
        return self

    def _setup(
        self,
        config: JWKSConfig,
        client: httpx.AsyncClient | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._core = CacheCore(config)
        http = config.http
        self._http = http
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            transport=transport, timeout=http.timeout, follow_redirects=False
        )
        self._flight: _Flight | None = None
        self._again = False  # see JWKSCache._again
        self._discovery_lock: asyncio.Lock | None = None
        self._core.on_urgent = self._urgent
        self._refresher: asyncio.Task[None] | None = None
        # True once the refresher runs (or is not wanted): see JWKSCache.refresher_ready.
        self.refresher_ready = False
        self._closed = False

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

    @property
    def core(self) -> CacheCore:
        return self._core

    async def get(self, *, wait: float | None = None) -> KeySet:
        """The current key set; see ``JWKSCache.get``."""
        if not self.refresher_ready:
            self._ensure_refresher()
        core = self._core
        keyset = core.fresh(core.clock.now())
        if keyset is not None:
            return keyset
        flight = self._begin(force=False)
        if flight is not None:
            await asyncio.wait({flight}, timeout=self._wait(wait))
        return core.usable(core.clock.now())

    async def refresh_for_unknown_kid(
        self, kid: str, *, wait: float | None = None, fresh: bool = False
    ) -> KeySet | None:
        """See ``JWKSCache.refresh_for_unknown_kid``."""
        core = self._core
        now = core.clock.now()
        if core.unknown_verdict(kid, now, fresh=fresh) == "negative":
            return None
        flight = self._flight
        # No await between the check and the task creation: atomic among tasks.
        if flight is None and not self._closed and core.take_unknown_budget(now, fresh=fresh):
            flight = self._start()
        if flight is None:
            return None
        await asyncio.wait({flight}, timeout=self._wait(wait))
        if not flight.done() or flight.cancelled() or flight.result() is not None:
            return None
        return core.after_unknown(kid, core.clock.now())

    async def reload(self, *, wait: float | None = None) -> KeySet:
        """Fetch now (re-running discovery), ignoring backoff; raise if the fetch fails."""
        self._core.rediscover = True
        flight = self._begin(force=True)
        if flight is None:
            raise JWKSUnavailableError("the cache is closed")
        await asyncio.wait({flight}, timeout=self._wait(wait))
        if not flight.done() or flight.cancelled():
            raise JWKSUnavailableError("reload still in flight after the wait limit")
        error = flight.result()
        if error is not None:
            raise error
        return self._core.usable(self._core.clock.now())

    def revoke(self, kids: Iterable[str], *, source: str = "api") -> list[str]:
        """Drop ``kids`` from the set at once and refuse them from now on; return the new ones."""
        return self._core.revoke(kids, source)

    def status(self) -> CacheStatus:
        """A snapshot of what is cached, how fresh it is and the last error."""
        return self._core.status()

    async def aclose(self) -> None:
        """Stop the refresher, let a fetch in flight finish, close an owned client."""
        self._closed = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        flight = self._flight
        if flight is not None:
            await asyncio.wait({flight}, timeout=self._http.timeout + 1.0)
            if not flight.done():
                flight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flight
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncJWKSCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals -------------------------------------------------------------------------

    def _wait(self, wait: float | None) -> float:
        return self._core.options.wait if wait is None else wait

    def _begin(self, *, force: bool) -> _Flight | None:
        if self._flight is not None:
            return self._flight
        if self._closed:
            return None
        if not force and self._core.in_backoff(self._core.clock.now()):
            return None
        return self._start()

    def _start(self) -> _Flight:
        flight = asyncio.get_running_loop().create_task(self._run_flight())
        self._flight = flight
        return flight

    async def _run_flight(self) -> KeyturnError | None:
        core = self._core
        started = time.perf_counter()
        error: KeyturnError | None = None
        try:
            url = await self._jwks_url()
            etag = core.etag()
            response = await get_async(self._client, url, jwks_headers(etag), self._http)
            result = interpret_jwks(response, etag, started)
            core.record_success(result, url, core.clock.now())
        except KeyturnError as exc:
            error = exc
        except Exception as exc:
            logger.exception("keyturn JWKS fetch failed unexpectedly")
            error = JWKSUnavailableError(f"fetch failed: {exc!r}")
        finally:
            self._flight = None
            if self._again and not self._closed:
                self._again = False
                self._start()
        if error is not None:
            core.record_failure(error, time.perf_counter() - started, core.clock.now())
        return error

    def _urgent(self) -> None:
        """Fetch now whatever the cooldown or backoff say (called after a revocation).

        Runs in the loop that drives the cache (the feed task's); from elsewhere (no running
        loop) the fetch is left to the next caller.
        """
        if self._closed:
            return
        if self._flight is not None:
            self._again = True
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start()

    async def _jwks_url(self) -> str:
        core = self._core
        if core.jwks_url is not None:
            return core.jwks_url
        # One discovery at a time: the revocation feed asks for it too (``discover``). Made
        # lazily, in the loop that uses the cache.
        if self._discovery_lock is None:
            self._discovery_lock = asyncio.Lock()
        async with self._discovery_lock:
            if core.discovery is None or core.rediscover:
                assert core.issuer is not None
                response = await get_async(self._client, discovery_url(core.issuer), {}, self._http)
                core.discovery = parse_discovery(response, core.issuer)
                core.rediscover = False
            return core.discovery.jwks_uri

    async def discover(self) -> None:
        """Run discovery now if it has not run (used by the revocation feed for its URLs)."""
        if self._core.issuer is not None and self._core.discovery is None:
            await self._jwks_url()

    def _ensure_refresher(self) -> None:
        if self._refresher is not None or not self._core.options.background:
            self.refresher_ready = True
            return
        if self._closed:
            return
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        self.refresher_ready = True

    async def _refresh_loop(self) -> None:
        core = self._core
        while True:
            await asyncio.sleep(core.next_wake(core.clock.now()))
            if not core.refresh_due(core.clock.now()):
                continue
            try:
                flight = self._begin(force=False)
                if flight is not None:
                    await asyncio.wait({flight})
            except Exception:
                logger.exception("keyturn JWKS refresher step failed")
