"""Behaviours 1, 2, 4, 5, 6 and 7 of DESIGN.md section 6, on httpx.MockTransport and a fake clock."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from keyturn.clock import FakeClock, SystemClock
from keyturn.errors import (
    ExpiredTokenError,
    JWKSUnavailableError,
    RevokedKidError,
    UnknownKidError,
)
from keyturn.keys import Alg
from keyturn.verifier import (
    AsyncVerifier,
    Backoff,
    CacheOptions,
    JWKSCache,
    StaleInfo,
    Verifier,
)
from keyturn.verifier._core import CacheCore
from tests.waiting import async_wait_until, wait_until, waiters

from .conftest import ISSUER, JWKS_URL, FakeIssuer

MakeVerifier = Callable[..., Verifier]


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- 1. cache the whole set; refresh ahead of expiry with jitter, off the request path ---------


def test_whole_set_is_cached_one_fetch_serves_every_kid(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kids = [issuer.add_key(), issuer.add_key(Alg.EdDSA), issuer.add_key()]
    verifier = make_verifier()
    for _ in range(3):
        for kid in kids:
            assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert issuer.fetches == 1
    assert issuer.discovery_requests == 1


def test_refresh_is_scheduled_ahead_of_expiry_with_jitter(issuer: FakeIssuer) -> None:
    issuer.add_key()
    issuer.max_age = 1000
    options = CacheOptions(refresh_ahead=0.25, jitter=0.1, background=False)
    delays = set()
    for seed in range(8):
        with JWKSCache(
            jwks_url=JWKS_URL,
            cache=options,
            transport=issuer.transport(),
            clock=issuer.clock,
            rng=random.Random(seed),
        ) as cache:
            cache.get()
            st = cache.status()
            assert st.expires_at is not None and st.fetched_at is not None
            assert st.refresh_at is not None
            assert st.expires_at - st.fetched_at == 1000
            delay = st.refresh_at - st.fetched_at
            # ahead of expiry by 25 %, minus up to 10 % jitter
            assert 650 <= delay <= 750
            delays.add(round(delay, 6))
    assert len(delays) == 8, "jitter must spread verifiers that fetched at the same moment"


def test_background_thread_refreshes_without_any_request() -> None:
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    issuer.add_key()
    issuer.max_age = 0  # clamped up to the (tiny, test-only) floor below
    options = CacheOptions(min_max_age=0.2, max_max_age=1.0, background=True)
    with JWKSCache(jwks_url=JWKS_URL, cache=options, transport=issuer.transport()) as cache:
        cache.get()  # first use starts the refresher
        first = issuer.fetches
        _until(lambda: issuer.fetches >= first + 3)
    # Not one of those fetches was made by a caller: get() ran once.
    assert cache.status().failures == 0


def test_async_background_task_refreshes_without_any_request() -> None:
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    kid = issuer.add_key()
    options = CacheOptions(min_max_age=0.2, max_max_age=1.0, background=True)
    issuer.max_age = 0

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"], issuer=ISSUER, cache=options, transport=issuer.transport()
        ) as verifier:
            await verifier.verify(issuer.token(kid))
            for _ in range(200):
                if issuer.fetches >= 3:
                    break
                await asyncio.sleep(0.02)
            assert issuer.fetches >= 3

    asyncio.run(main())


def test_background_refresher_does_not_refetch_a_set_that_just_arrived() -> None:
    """The refresher first wakes shortly after start, before any set exists; if the caller's
    first fetch has finished by then, that wake must not fetch again (it once did: a redundant
    conditional GET per verifier start, at a moment that depended on machine load)."""
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    issuer.add_key()
    options = CacheOptions(background=True)  # max-age 300 s: nothing is due for minutes
    with JWKSCache(jwks_url=JWKS_URL, cache=options, transport=issuer.transport()) as cache:
        pauses = _spy_pauses(cache.core)
        cache.get()
        # The refresher has made its decision and gone to sleep on the new set's schedule.
        wait_until(lambda: any(p > 60 for p in pauses), what="the refresher's long pause")
        assert issuer.fetches == 1


def _spy_pauses(core: CacheCore) -> list[float]:
    """Every pause the background refresher computes (``next_wake``), recorded in order."""
    pauses: list[float] = []
    real = core.next_wake

    def next_wake(now: float) -> float:
        pause = real(now)
        pauses.append(pause)
        return pause

    core.next_wake = next_wake  # type: ignore[method-assign]
    return pauses


def test_async_background_refresher_does_not_refetch_a_set_that_just_arrived() -> None:
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    kid = issuer.add_key()

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"], issuer=ISSUER, transport=issuer.transport()
        ) as verifier:
            pauses = _spy_pauses(verifier.cache.core)
            await verifier.verify(issuer.token(kid))
            await async_wait_until(
                lambda: any(p > 60 for p in pauses), what="the refresher's long pause"
            )
            assert issuer.fetches == 1

    asyncio.run(main())


def test_refresher_starts_when_the_first_set_came_from_reload() -> None:
    """verify() takes a fresh set without calling get() once the refresher runs; a set loaded
    by reload() must not let it skip starting the refresher."""
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    kid = issuer.add_key()
    issuer.max_age = 0
    options = CacheOptions(min_max_age=0.2, max_max_age=1.0, background=True)
    with Verifier(
        algorithms=["ES256"], jwks_url=JWKS_URL, cache=options, transport=issuer.transport()
    ) as verifier:
        verifier.reload()
        verifier.verify(issuer.token(kid))
        first = issuer.fetches
        _until(lambda: issuer.fetches >= first + 2)


def test_async_refresher_starts_when_the_first_set_came_from_reload() -> None:
    issuer = FakeIssuer(SystemClock())  # type: ignore[arg-type]
    kid = issuer.add_key()
    issuer.max_age = 0
    options = CacheOptions(min_max_age=0.2, max_max_age=1.0, background=True)

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"], jwks_url=JWKS_URL, cache=options, transport=issuer.transport()
        ) as verifier:
            await verifier.reload()
            await verifier.verify(issuer.token(kid))
            first = issuer.fetches
            for _ in range(200):
                if issuer.fetches >= first + 2:
                    break
                await asyncio.sleep(0.02)
            assert issuer.fetches >= first + 2

    asyncio.run(main())


def _slow_first_fetch(issuer: FakeIssuer, clock: FakeClock, seconds: float) -> httpx.MockTransport:
    """The issuer's transport, with the clock moved ``seconds`` on while a JWKS request runs."""

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == JWKS_URL:
            clock.advance(seconds)
        return issuer.handler(request)

    return httpx.MockTransport(handler)


def test_claims_are_judged_after_waiting_for_the_key_set(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    token = issuer.token(kid, ttl=10)  # expires 10 s from now, 70 s with the default leeway
    verifier = make_verifier(transport=_slow_first_fetch(issuer, clock, 120))
    with pytest.raises(ExpiredTokenError):
        verifier.verify(token)  # valid when it arrived, expired once the set was there


def test_async_claims_are_judged_after_waiting_for_the_key_set(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    token = issuer.token(kid, ttl=10)

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            jwks_url=JWKS_URL,
            clock=clock,
            cache=CacheOptions(background=False),
            transport=_slow_first_fetch(issuer, clock, 120),
        ) as verifier:
            with pytest.raises(ExpiredTokenError):
                await verifier.verify(token)

    asyncio.run(main())


# -- 2. single flight; a caller's timeout never cancels the fetch -------------------------------


def test_concurrent_callers_share_one_fetch(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.gate = threading.Event()
    verifier = make_verifier(jwks_url=JWKS_URL)
    token = issuer.token(kid)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        claims = verifier.verify(token)
        with lock:
            results.append(claims["sub"])

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    # Every caller is blocked on the one flight, whose fetch is held at the gate.
    flight = wait_until(lambda: verifier.cache._flight, what="the fetch to start")
    wait_until(lambda: waiters(flight.done) == 20, what="20 callers waiting on the fetch")
    assert issuer.fetches == 1
    issuer.gate.set()
    for t in threads:
        t.join()
    assert results == ["alice"] * 20
    assert issuer.fetches == 1


def test_caller_timeout_does_not_cancel_the_fetch(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.gate = threading.Event()
    verifier = make_verifier(jwks_url=JWKS_URL, cache=CacheOptions(wait=0.05, background=False))
    with pytest.raises(JWKSUnavailableError) as info:
        verifier.verify(issuer.token(kid))
    assert info.value.action == "retry"
    issuer.gate.set()  # the fetch the impatient caller started goes on and completes
    _until(lambda: verifier.cache.status().fetched_at is not None)
    assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert issuer.fetches == 1


def test_async_cancelled_caller_does_not_cancel_the_fetch(issuer: FakeIssuer) -> None:
    kid = issuer.add_key()

    async def main() -> None:
        gate = asyncio.Event()
        calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            if str(request.url) == JWKS_URL:
                calls += 1
                await gate.wait()
            return issuer.handler(request)

        async with AsyncVerifier(
            algorithms=["ES256"],
            jwks_url=JWKS_URL,
            transport=httpx.MockTransport(handler),
            clock=issuer.clock,
            cache=CacheOptions(background=False),
        ) as verifier:
            token = issuer.token(kid)
            waiters = [asyncio.create_task(verifier.verify(token)) for _ in range(10)]
            # The fetch task runs after every waiter reached its wait (all were ready first).
            await async_wait_until(lambda: calls == 1, what="the shared fetch to start")
            waiters[0].cancel()  # one caller gives up ...
            await asyncio.wait({waiters[0]})
            assert calls == 1
            gate.set()  # ... the shared fetch still completes for everyone else
            results = await asyncio.gather(*waiters[1:])
            assert [c["sub"] for c in results] == ["alice"] * 9
            assert waiters[0].cancelled()
            assert calls == 1

    asyncio.run(main())


# -- 4. stale-if-error with a hard limit and a hook; never wipe the cache --------------------


def test_stale_if_error_then_hard_limit_then_recovery(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    stale: list[StaleInfo] = []
    verifier = make_verifier(
        cache=CacheOptions(stale_if_error=600, background=False),
        backoff=Backoff(initial=5, maximum=5, jitter=0),
        on_stale=stale.append,
    )
    verifier.verify(issuer.token(kid))
    issuer.fail_status = 500

    clock.advance(301)  # expired (max-age 300); the refetch fails
    assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert len(stale) == 1 and stale[0].last_error and "500" in stale[0].last_error
    assert verifier.cache.status().kids == (kid,), "a failed fetch never wipes the cache"

    clock.advance(600)  # past expiry + stale limit
    with pytest.raises(JWKSUnavailableError) as info:
        verifier.verify(issuer.token(kid))
    assert info.value.code == "jwks_unavailable" and info.value.action == "retry"
    assert verifier.cache.status().kids == (kid,)

    issuer.fail_status = None
    clock.advance(10)  # past the backoff: the next call fetches and recovers
    assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert verifier.metrics.snapshot().stale_served >= 1


def test_bad_response_body_is_a_failure_not_a_wipe(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    for body in (b"not json", b'{"keys": []}', b"[]"):
        issuer.routes[JWKS_URL] = _responder(body)
        clock.advance(1000)
        with pytest.raises(JWKSUnavailableError):
            verifier.reload()
        assert verifier.cache.status().kids == (kid,)


def _responder(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(200, content=body)


# -- 5. exponential backoff with jitter ----------------------------------------------------------


def test_fetches_back_off_exponentially(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.fail_status = 503
    verifier = make_verifier(
        jwks_url=JWKS_URL, backoff=Backoff(initial=10, maximum=40, multiplier=2, jitter=0)
    )
    token = issuer.token(kid)
    expected = []
    for step in (0, 0, 10, 0, 10, 10, 20, 40, 39, 1, 40):
        clock.advance(step)
        with pytest.raises(JWKSUnavailableError):
            verifier.verify(token)
        expected.append(issuer.fetches)
    # attempts at t=0, 10, 30, 90, 130, 170: waits of 10, 20, 40, then capped at 40
    assert expected == [1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6]


def test_backoff_jitter_spreads_retries() -> None:
    backoff = Backoff(initial=8, maximum=100, multiplier=2, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(50)]
    assert all(16 <= d <= 32 for d in delays)
    assert len(set(delays)) > 40
    assert backoff.delay(100, rng) <= 100


# -- 6. Cache-Control within floor and ceiling; ETag conditional GET -----------------------------


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        pytest.param("public, max-age=600", 600, id="honoured"),
        pytest.param("max-age=5", 60, id="floor"),
        pytest.param("public, max-age=31536000", 86400, id="ceiling"),
        pytest.param("no-store", 60, id="no-store-means-floor"),
        pytest.param("", 300, id="absent-means-default"),
        pytest.param('max-age="120", must-revalidate', 120, id="quoted"),
    ],
)
def test_max_age_is_clamped(
    issuer: FakeIssuer, make_verifier: MakeVerifier, cache_control: str, lifetime: float
) -> None:
    kid = issuer.add_key()
    issuer.cache_control = cache_control
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    st = verifier.cache.status()
    assert st.expires_at is not None and st.fetched_at is not None
    assert st.expires_at - st.fetched_at == lifetime


def test_conditional_get_304_keeps_set_and_resets_freshness(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    etag = verifier.cache.status().etag
    assert etag is not None and issuer.jwks_requests[0].headers.get("if-none-match") is None

    clock.advance(400)
    assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert issuer.fetches == 2
    assert issuer.jwks_requests[1].headers["if-none-match"] == etag
    st = verifier.cache.status()
    assert st.kids == (kid,) and st.fetched_at == clock.now()
    assert st.expires_at == clock.now() + 300
    assert verifier.metrics.snapshot().not_modified == 1


# -- 7. atomic replacement; nothing outside the latest good set; revocation; reload() ----------


def test_kid_absent_from_latest_set_is_refused(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    old = issuer.add_key()
    verifier = make_verifier()
    old_token = issuer.token(old)
    verifier.verify(old_token)
    new = issuer.add_key()
    issuer.unpublish(old)
    verifier.reload()
    assert verifier.verify(issuer.token(new))["sub"] == "alice"
    with pytest.raises(UnknownKidError):
        verifier.verify(old_token)  # it was good a moment ago; it is not in the latest set


def test_reload_on_demand_picks_up_a_new_key_without_the_unknown_kid_path(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    first = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(first))
    second = issuer.add_key()
    assert second in verifier.reload()
    verifier.verify(issuer.token(second))
    assert verifier.metrics.snapshot().unknown_kids == 0


def test_revocation_applies_at_once_and_outlives_a_jwks_still_listing_the_key(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    doomed = issuer.add_key()
    other = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(doomed))
    assert verifier.revoke([doomed]) == [doomed]
    with pytest.raises(RevokedKidError) as info:
        verifier.verify(issuer.token(doomed))
    assert info.value.action == "try_refresh"
    assert doomed not in verifier.cache.status().kids
    verifier.reload()  # the JWKS still lists it
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(doomed))
    assert verifier.verify(issuer.token(other))["sub"] == "alice"
    assert verifier.revoke([doomed]) == []


def test_readers_only_ever_see_a_whole_set(issuer: FakeIssuer, clock: FakeClock) -> None:
    a, b, c, d = (issuer.add_key() for _ in range(4))
    sets = [
        {a: issuer.published[a], b: issuer.published[b]},
        {c: issuer.published[c], d: issuer.published[d]},
    ]
    allowed = {frozenset(s) for s in sets}
    issuer.published = dict(sets[0])
    seen: set[frozenset[str]] = set()
    stop = threading.Event()
    errors: list[str] = []
    with JWKSCache(
        jwks_url=JWKS_URL,
        transport=issuer.transport(),
        clock=clock,
        cache=CacheOptions(background=False),
    ) as cache:
        cache.get()

        def read() -> None:
            while not stop.is_set():
                kids = frozenset(cache.get().keys)
                if kids not in allowed:
                    errors.append(str(sorted(kids)))
                seen.add(kids)

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        for i in range(12):
            issuer.published = dict(sets[(i + 1) % 2])
            cache.reload()
        stop.set()
        for t in readers:
            t.join()
    assert not errors
    assert seen == allowed
