"""``Verifier`` and ``AsyncVerifier``: verify a token against an issuer's cached key set."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import httpx

from keyturn.clock import Clock, SystemClock
from keyturn.errors import ConfigError, JWKSUnavailableError, TokenError, UnknownKidError
from keyturn.keys.algorithms import Alg, parse_alg
from keyturn.tokens import KeySet
from keyturn.tokens.jws import DEFAULT_MAX_TOKEN_BYTES, ParsedToken, parse_compact
from keyturn.tokens.verify import verified_claims
from keyturn.verifier import _metrics as ev
from keyturn.verifier._async_cache import AsyncJWKSCache
from keyturn.verifier._cache import JWKSCache
from keyturn.verifier._core import CacheCore
from keyturn.verifier._feed import (
    FeedThread,
    RevocationSubscriber,
    check_feed_config,
    feed_wanted,
)
from keyturn.verifier._metrics import EventHook, StaleHook, VerifierMetrics
from keyturn.verifier._options import (
    DEFAULT_BACKOFF,
    DEFAULT_CACHE_OPTIONS,
    DEFAULT_HTTP_OPTIONS,
    DEFAULT_REVOCATIONS,
    DEFAULT_UNKNOWN_KID_OPTIONS,
    Backoff,
    CacheOptions,
    HTTPOptions,
    JWKSConfig,
    RevocationFeed,
    UnknownKidOptions,
)

DEFAULT_LEEWAY = 60.0
DEFAULT_REQUIRED_CLAIMS = ("exp",)


@dataclass(frozen=True, slots=True)
class _Rules:
    """What a token must satisfy besides its signature."""

    algorithms: frozenset[Alg]
    issuer: str | frozenset[str] | None
    audience: str | frozenset[str] | None
    leeway: float
    required: tuple[str, ...]
    max_token_bytes: int


def _rules(
    algorithms: Collection[Alg | str],
    issuer: str | None,
    accept_issuers: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    leeway: float,
    required_claims: Collection[str],
    max_token_bytes: int,
) -> _Rules:
    if isinstance(algorithms, str):
        raise ConfigError("algorithms must be a collection, e.g. ['RS256'], not a string")
    algs = frozenset(parse_alg(a) if isinstance(a, str) else a for a in algorithms)
    if not algs:
        # No default that admits everything: the caller names what its issuer signs with.
        raise ConfigError("algorithms must name at least one algorithm")
    if not math.isfinite(leeway) or leeway < 0:
        # A NaN leeway would make every time comparison false: expired tokens would pass.
        raise ConfigError("leeway must be a finite number of seconds, not negative")
    iss: str | frozenset[str] | None
    if accept_issuers is None:
        iss = issuer
    else:
        iss = accept_issuers if isinstance(accept_issuers, str) else frozenset(accept_issuers)
    aud = audience if audience is None or isinstance(audience, str) else frozenset(audience)
    return _Rules(algs, iss, aud, leeway, tuple(required_claims), max_token_bytes)


def _check(
    parsed: ParsedToken, keyset: KeySet, revoked: frozenset[str], rules: _Rules, now: float
) -> dict[str, Any]:
    return verified_claims(
        parsed, keyset, revoked, now, rules.leeway, rules.issuer, rules.audience, rules.required
    )


def _unknown_or_unavailable(exc: UnknownKidError, core: CacheCore) -> NoReturn:
    """Re-raise an unknown kid, unless the key set cannot be refreshed at the moment.

    While the issuer's JWKS is unreachable, a kid missing from the cached set is most likely a
    key published after the last good fetch, not a bad token: answering ``unknown_kid``
    (``try_refresh``, a 401) would send every client for a new token signed by the same
    unseen key, a 401 wave. ``jwks_unavailable`` (``retry``, a 503) tells the truth.
    """
    detail = core.unreachable_detail()
    if detail is None:
        raise exc
    raise JWKSUnavailableError(
        f"{exc.detail}, and the key set cannot be refreshed ({detail})", kid=exc.extra.get("kid")
    ) from exc


def _issued_after_fetch(parsed: ParsedToken, core: CacheCore) -> bool:
    """The unknown-kid path only: does the (unverified) ``iat`` postdate our set's fetch?"""
    try:
        issued_at = parsed.payload().get("iat")
    except TokenError:
        return False
    return core.issued_after_fetch(issued_at)


def _unknown_kid(exc: UnknownKidError) -> str | None:
    kid = exc.extra.get("kid")
    return kid if isinstance(kid, str) else None


def _record(core: CacheCore, exc: TokenError, parsed: ParsedToken | None) -> None:
    """Count and report a rejection (successes are counted by ``VerifierMetrics.ok``)."""
    core.metrics.outcome(exc.code)
    core.emit(
        ev.REJECTED,
        code=exc.code,
        action=exc.action,
        kid=parsed.kid if parsed is not None else None,
        detail=exc.detail,
    )


class Verifier:
    """Verify JWTs from one issuer; thread-safe; one per issuer per process.

    ``algorithms`` is required and must not be empty: only those algorithms are accepted (and
    never ``none`` or an HMAC algorithm). Configure with ``issuer`` (discovery, and ``iss``
    must equal it unless ``accept_issuers`` says otherwise) or ``jwks_url``. ``audience`` (a
    string or several), ``leeway`` seconds of clock skew for ``exp``/``nbf``/``iat`` and
    ``required_claims`` complete the claim rules.

    ``verify`` returns the claims or raises a ``TokenError`` subclass from ``keyturn.errors``
    whose ``code`` names the reason and whose ``action`` says what to do: ``try_refresh``
    (unknown or revoked kid: get a new token), ``refresh`` (expired), ``reject`` (bad signature
    or claims), ``retry`` (``jwks_unavailable``: our side failed, not the token).

    An unknown kid triggers at most one refresh per ``UnknownKidOptions.cooldown``; a bad
    signature from a known kid never does. Revocations are on by default: when the issuer's
    discovery advertises a revocation feed, it is polled every ``DEFAULT_POLL_INTERVAL``
    seconds with ``If-None-Match`` (``RevocationFeed(mode="stream")`` for pushes within a
    second; ``revocations=None`` turns it off). A revocation drops the key at once and makes
    the verifier fetch the JWKS at once, past the unknown-kid cooldown. The default feed stays
    off when ``client`` or a sync-only ``transport`` is given without ``feed_transport`` (it
    would bypass that HTTP set-up). See ``JWKSCache`` for caching, stale-if-error and HTTP.
    """

    def __init__(
        self,
        *,
        algorithms: Collection[Alg | str],
        issuer: str | None = None,
        jwks_url: str | None = None,
        audience: str | Collection[str] | None = None,
        accept_issuers: str | Collection[str] | None = None,
        leeway: float = DEFAULT_LEEWAY,
        required_claims: Collection[str] = DEFAULT_REQUIRED_CLAIMS,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache: CacheOptions = DEFAULT_CACHE_OPTIONS,
        backoff: Backoff = DEFAULT_BACKOFF,
        unknown_kid: UnknownKidOptions = DEFAULT_UNKNOWN_KID_OPTIONS,
        http: HTTPOptions = DEFAULT_HTTP_OPTIONS,
        revocations: RevocationFeed | None = DEFAULT_REVOCATIONS,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        feed_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: VerifierMetrics | None = None,
        on_event: EventHook | None = None,
        on_stale: StaleHook | None = None,
    ) -> None:
        self._rules = _rules(
            algorithms, issuer, accept_issuers, audience, leeway, required_claims, max_token_bytes
        )
        if revocations is not None:
            check_feed_config(revocations, issuer)  # before anything is opened
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
        self._clock = config.clock
        self._cache = JWKSCache.from_config(config, client=client, transport=transport)
        self._feed: FeedThread | None = None
        self._feed_started = False
        self._lock = threading.Lock()
        self._core = self._cache.core
        self._now = self._clock.now
        self._count_ok = self._cache.metrics.ok_counter()
        if feed_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            feed_transport = transport  # e.g. httpx.MockTransport serves both
        if (
            revocations is not None
            and revocations.when_advertised
            and feed_transport is None
            and (client is not None or transport is not None)
        ):
            # The default feed would have to bypass the caller's own HTTP set-up (proxies,
            # CAs, a test transport): it stays off; pass feed_transport or a RevocationFeed.
            revocations = None
        if feed_wanted(revocations, issuer, jwks_url):
            assert revocations is not None
            cache_ = self._cache
            subscriber = RevocationSubscriber(
                feed=revocations,
                core=cache_.core,
                http=http,
                rng=rng,
                discover=lambda: asyncio.to_thread(cache_.discover),
            )
            self._feed = FeedThread(subscriber, feed_transport)

    @property
    def cache(self) -> JWKSCache:
        """The key cache (status, reload, revoke)."""
        return self._cache

    @property
    def metrics(self) -> VerifierMetrics:
        return self._cache.metrics

    def start(self) -> None:
        """Start the revocation feed now (otherwise it starts on the first ``verify``)."""
        if self._feed is None or self._feed_started:
            return
        with self._lock:
            if not self._feed_started:
                self._feed_started = True
                self._feed.start()

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """Return the verified claims or raise a ``TokenError`` (see the class docstring)."""
        rules = self._rules
        parsed: ParsedToken | None = None
        try:
            # Parse first: a malformed token or a refused algorithm costs no fetch (nor the
            # feed's discovery).
            parsed = parse_compact(
                token, allowed_algs=rules.algorithms, max_token_bytes=rules.max_token_bytes
            )
            if not self._feed_started and self._feed is not None:
                self.start()
            cache = self._cache
            core = self._core
            now = self._now()
            # Warm cache, once the refresher runs: the fresh set from the core's lock-free read,
            # with no get() call. Otherwise get() loads, refreshes or serves stale.
            keyset = core.fresh(now) if cache.refresher_ready else None
            if keyset is None:
                keyset = cache.get()
                now = self._now()  # get() may have waited for a fetch
            try:
                claims = _check(parsed, keyset, core.revoked, rules, now)
            except UnknownKidError as exc:
                kid = _unknown_kid(exc)
                newer = _issued_after_fetch(parsed, core)
                fresh = cache.refresh_for_unknown_kid(kid, fresh=newer) if kid is not None else None
                if fresh is None:
                    _unknown_or_unavailable(exc, core)
                claims = _check(parsed, fresh, core.revoked, rules, self._now())
        except TokenError as exc:
            _record(self._core, exc, parsed)
            raise
        self._count_ok()
        return claims

    def reload(self) -> KeySet:
        """Fetch the key set now; raise ``JWKSUnavailableError`` if that fails."""
        return self._cache.reload()

    def revoke(self, kids: Iterable[str]) -> list[str]:
        """Refuse ``kids`` from now on, as if the revocation feed had pushed them."""
        return self._cache.revoke(kids)

    def close(self) -> None:
        """Stop background threads and close owned HTTP clients."""
        if self._feed is not None and self._feed_started:
            self._feed.stop()
        self._cache.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncVerifier:
    """The asyncio twin of ``Verifier``: same options, ``await verify(token)``; task-safe.

    Background refresh and the revocation feed run as tasks in the loop of first use; close
    with ``await aclose()`` or ``async with`` (e.g. in an ASGI lifespan).
    """

    def __init__(
        self,
        *,
        algorithms: Collection[Alg | str],
        issuer: str | None = None,
        jwks_url: str | None = None,
        audience: str | Collection[str] | None = None,
        accept_issuers: str | Collection[str] | None = None,
        leeway: float = DEFAULT_LEEWAY,
        required_claims: Collection[str] = DEFAULT_REQUIRED_CLAIMS,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache: CacheOptions = DEFAULT_CACHE_OPTIONS,
        backoff: Backoff = DEFAULT_BACKOFF,
        unknown_kid: UnknownKidOptions = DEFAULT_UNKNOWN_KID_OPTIONS,
        http: HTTPOptions = DEFAULT_HTTP_OPTIONS,
        revocations: RevocationFeed | None = DEFAULT_REVOCATIONS,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: VerifierMetrics | None = None,
        on_event: EventHook | None = None,
        on_stale: StaleHook | None = None,
    ) -> None:
        self._rules = _rules(
            algorithms, issuer, accept_issuers, audience, leeway, required_claims, max_token_bytes
        )
        if revocations is not None:
            check_feed_config(revocations, issuer)  # before anything is opened
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
        self._clock = config.clock
        self._cache = AsyncJWKSCache.from_config(config, client=client, transport=transport)
        self._core = self._cache.core
        self._now = self._clock.now
        self._count_ok = self._cache.metrics.ok_counter()
        self._subscriber: RevocationSubscriber | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_client: httpx.AsyncClient | None = None
        self._feed_transport = transport
        # The default feed goes through the caller's client when there is one (its proxies and
        # CAs are the ones that reach the issuer); an explicit feed keeps its own client.
        self._feed_shared_client = client if revocations is DEFAULT_REVOCATIONS else None
        if feed_wanted(revocations, issuer, jwks_url):
            assert revocations is not None
            self._subscriber = RevocationSubscriber(
                feed=revocations,
                core=self._cache.core,
                http=http,
                rng=rng,
                discover=self._cache.discover,
            )

    @property
    def cache(self) -> AsyncJWKSCache:
        """The key cache (status, reload, revoke)."""
        return self._cache

    @property
    def metrics(self) -> VerifierMetrics:
        return self._cache.metrics

    def start(self) -> None:
        """Start the revocation feed task now (otherwise on the first ``verify``)."""
        if self._subscriber is None or self._feed_task is not None:
            return
        client = self._feed_shared_client
        if client is None:
            client = self._feed_client = httpx.AsyncClient(
                transport=self._feed_transport, follow_redirects=False
            )
        self._feed_task = asyncio.get_running_loop().create_task(self._subscriber.run(client))

    async def verify(self, token: str | bytes) -> dict[str, Any]:
        """Return the verified claims or raise a ``TokenError`` (see ``Verifier``)."""
        rules = self._rules
        parsed: ParsedToken | None = None
        try:
            parsed = parse_compact(
                token, allowed_algs=rules.algorithms, max_token_bytes=rules.max_token_bytes
            )
            if self._feed_task is None:
                self.start()
            cache = self._cache
            core = self._core
            now = self._now()
            # As in Verifier.verify: a warm cache costs no await.
            keyset = core.fresh(now) if cache.refresher_ready else None
            if keyset is None:
                keyset = await cache.get()
                now = self._now()
            try:
                claims = _check(parsed, keyset, core.revoked, rules, now)
            except UnknownKidError as exc:
                kid = _unknown_kid(exc)
                newer = _issued_after_fetch(parsed, core)
                fresh = (
                    await cache.refresh_for_unknown_kid(kid, fresh=newer)
                    if kid is not None
                    else None
                )
                if fresh is None:
                    _unknown_or_unavailable(exc, core)
                claims = _check(parsed, fresh, core.revoked, rules, self._now())
        except TokenError as exc:
            _record(self._core, exc, parsed)
            raise
        self._count_ok()
        return claims

    async def reload(self) -> KeySet:
        """Fetch the key set now; raise ``JWKSUnavailableError`` if that fails."""
        return await self._cache.reload()

    def revoke(self, kids: Iterable[str]) -> list[str]:
        """Refuse ``kids`` from now on, as if the revocation feed had pushed them."""
        return self._cache.revoke(kids)

    async def aclose(self) -> None:
        """Cancel background tasks and close owned HTTP clients."""
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
        if self._feed_client is not None:
            await self._feed_client.aclose()
        await self._cache.aclose()

    async def __aenter__(self) -> AsyncVerifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
