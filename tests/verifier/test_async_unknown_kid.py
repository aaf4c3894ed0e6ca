"""AsyncVerifier parity with test_unknown_kid.py: refresh on an unknown kid, cooldown, negative
cache, backoff. Each test mirrors the sync one of the same name (and test_cache.py's backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.clock import FakeClock
from keyturn.errors import BadSignatureError, JWKSUnavailableError, UnknownKidError
from keyturn.keys import Alg
from keyturn.verifier import AsyncVerifier, Backoff, CacheOptions, UnknownKidOptions
from tests.waiting import async_wait_until

from .conftest import ISSUER, JWKS_URL, START, FakeIssuer
from .test_unknown_kid import _forged

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def _verifier(
    issuer: FakeIssuer,
    clock: FakeClock,
    handler: Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response] | None = None,
    **kw: Any,
) -> AsyncIterator[AsyncVerifier]:
    kw.setdefault("algorithms", [Alg.ES256, Alg.RS256, Alg.EdDSA])
    if "jwks_url" not in kw:
        kw.setdefault("issuer", ISSUER)
    kw.setdefault("cache", CacheOptions(background=False))
    transport = httpx.MockTransport(handler or issuer.handler)
    async with AsyncVerifier(
        transport=transport, clock=clock, rng=random.Random(1234), **kw
    ) as verifier:
        yield verifier


async def test_unknown_kid_triggers_one_refresh_and_then_verifies(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    first = issuer.add_key()
    async with _verifier(issuer, clock) as verifier:
        await verifier.verify(issuer.token(first))
        rotated = issuer.add_key()
        assert (await verifier.verify(issuer.token(rotated)))["sub"] == "alice"
        assert issuer.fetches == 2
        assert verifier.metrics.snapshot().unknown_kids == 1


async def test_bad_signature_of_a_known_kid_never_refreshes(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    async with _verifier(issuer, clock) as verifier:
        await verifier.verify(issuer.token(kid))
        forged = _forged(issuer, kid)
        for _ in range(5):
            with pytest.raises(BadSignatureError) as info:
                await verifier.verify(forged)
            assert info.value.action == "reject"
        assert issuer.fetches == 1


async def test_cooldown_is_not_waited_on(issuer: FakeIssuer, clock: FakeClock) -> None:
    kid = issuer.add_key()
    async with _verifier(issuer, clock, unknown_kid=UnknownKidOptions(cooldown=30)) as verifier:
        await verifier.verify(issuer.token(kid))
        with pytest.raises(UnknownKidError):
            await verifier.verify(_forged(issuer, "random-1"))  # spends the refresh budget
        assert issuer.fetches == 2

        late = issuer.add_key()  # a real new key, inside the cooldown
        # Issued at the moment of the last fetch, not after it: the cooldown applies in full
        # (a token issued later may refresh once per fresh_cooldown, see test_emergency.py).
        late_token = issuer.token(late)
        started = time.monotonic()
        with pytest.raises(UnknownKidError) as info:
            await verifier.verify(late_token)
        assert time.monotonic() - started < 0.5, "callers must not wait for the cooldown to end"
        assert info.value.action == "try_refresh"
        assert issuer.fetches == 2

        clock.advance(29)  # one second short of the cooldown: still no fetch
        with pytest.raises(UnknownKidError):
            await verifier.verify(late_token)
        assert issuer.fetches == 2
        clock.advance(1)
        assert (await verifier.verify(late_token))["sub"] == "alice"
        assert issuer.fetches == 3


async def test_negative_cache_remembers_misses_and_is_bounded(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    options = UnknownKidOptions(cooldown=1, negative_cache_size=3, negative_ttl=100)
    async with _verifier(issuer, clock, unknown_kid=options) as verifier:
        await verifier.verify(issuer.token(kid))
        replayed = _forged(issuer, "retired-long-ago")
        with pytest.raises(UnknownKidError):
            await verifier.verify(replayed)
        fetches = issuer.fetches
        for _ in range(5):  # long past the cooldown, but the same miss: no refresh
            clock.advance(10)
            with pytest.raises(UnknownKidError):
                await verifier.verify(replayed)
        assert issuer.fetches == fetches
        clock.advance(51)  # 101 s after the miss: past the negative TTL, one refresh again
        with pytest.raises(UnknownKidError):
            await verifier.verify(replayed)
        assert issuer.fetches == fetches + 1

        for i in range(10):
            clock.advance(2)
            with pytest.raises(UnknownKidError):
                await verifier.verify(_forged(issuer, f"random-{i}"))
        assert verifier.cache.core.negative_size() == 3


async def test_concurrent_unknown_kids_share_one_fetch(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    gate = asyncio.Event()
    gated = False

    async def handler(request: httpx.Request) -> httpx.Response:
        if gated and str(request.url) == JWKS_URL:
            issuer.jwks_requests.append(request)  # counted here; the reply comes after the gate
            await gate.wait()
            issuer.jwks_requests.pop()
        return issuer.handler(request)

    async with _verifier(issuer, clock, handler=handler) as verifier:
        await verifier.verify(issuer.token(kid))
        gated = True
        new = issuer.add_key()

        async def call(token: str) -> str:
            try:
                return str((await verifier.verify(token))["sub"])
            except UnknownKidError:
                return "unknown"

        tokens = [issuer.token(new)] * 5 + [_forged(issuer, f"r{i}") for i in range(5)]
        tasks = [asyncio.create_task(call(t)) for t in tokens]
        # Every task has run up to its wait on the one fetch: the unknown-kid counter says so.
        await async_wait_until(
            lambda: verifier.metrics.snapshot().unknown_kids == 10, what="10 unknown kids"
        )
        assert issuer.fetches == 2
        gate.set()
        results = await asyncio.gather(*tasks)
        assert issuer.fetches == 2
        assert sorted(results) == ["alice"] * 5 + ["unknown"] * 5


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=25, allow_nan=False),
            st.text(alphabet="abcdef0123456789", min_size=1, max_size=12),
        ),
        min_size=1,
        max_size=60,
    ),
    cooldown=st.sampled_from([5.0, 30.0]),
    fresh=st.booleans(),
)
def test_flood_of_random_kids_fetches_at_most_once_per_cooldown(
    steps: list[tuple[float, str]], cooldown: float, fresh: bool
) -> None:
    # As in test_unknown_kid.py: replayed tokens once per cooldown, tokens claiming to be newer
    # than the cached set once per fresh_cooldown (issue #12).
    limit = 1.0 if fresh else cooldown
    clock = FakeClock(START)
    issuer = FakeIssuer(clock)
    issuer.add_key()
    issuer.max_age = 86400  # no expiry-driven fetch during the flood
    fetch_times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == JWKS_URL:
            fetch_times.append(clock.now())
        return issuer.handler(request)

    async def main() -> None:
        async with _verifier(
            issuer,
            clock,
            handler=handler,
            algorithms=["ES256"],
            jwks_url=JWKS_URL,
            unknown_kid=UnknownKidOptions(cooldown=cooldown, fresh_cooldown=1.0),
        ) as verifier:
            await verifier.cache.get()
            for advance, kid in steps:
                clock.advance(advance)
                iat = None if fresh else int(START) - 1
                with pytest.raises(UnknownKidError):
                    await verifier.verify(_forged(issuer, kid, iat=iat))

    asyncio.run(main())
    flood = fetch_times[1:]
    assert all(b - a >= limit for a, b in itertools.pairwise(flood))
    elapsed = clock.now() - START
    assert len(flood) <= elapsed // limit + 1


async def test_unknown_kid_while_the_jwks_is_unreachable_is_unavailable_not_unknown(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    known = issuer.add_key()
    async with _verifier(issuer, clock) as verifier:
        await verifier.verify(issuer.token(known))
        issuer.fail_status = 503
        rotated = issuer.add_key()
        with pytest.raises(JWKSUnavailableError) as info:
            await verifier.verify(issuer.token(rotated))
        assert info.value.action == "retry"
        assert (await verifier.verify(issuer.token(known)))["sub"] == "alice"
        issuer.fail_status = None
        clock.advance(3600)
        assert (await verifier.verify(issuer.token(rotated)))["sub"] == "alice"
        with pytest.raises(UnknownKidError):
            await verifier.verify(_forged(issuer, "never-published"))


async def test_unknown_kid_inside_the_backoff_does_not_fetch(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    """A failed fetch backs off; an unknown kid must not jump the backoff (nor the cooldown)."""
    known = issuer.add_key()
    backoff = Backoff(initial=10, maximum=40, multiplier=2, jitter=0)
    options = UnknownKidOptions(cooldown=1)
    async with _verifier(issuer, clock, backoff=backoff, unknown_kid=options) as verifier:
        await verifier.verify(issuer.token(known))
        issuer.fail_status = 503
        with pytest.raises(JWKSUnavailableError):
            await verifier.verify(_forged(issuer, "k1"))  # refresh fails: backoff 10 s
        assert issuer.fetches == 2
        for i, step in enumerate((2, 2, 2, 2)):  # t = 2..8 s: past the cooldown, in the backoff
            clock.advance(step)
            with pytest.raises(JWKSUnavailableError):
                await verifier.verify(_forged(issuer, f"k{i + 2}"))
        assert issuer.fetches == 2
        issuer.fail_status = None
        clock.advance(2)  # t = 10 s: the backoff is over
        with pytest.raises(UnknownKidError):
            await verifier.verify(_forged(issuer, "k9"))
        assert issuer.fetches == 3


async def test_fetches_back_off_exponentially(issuer: FakeIssuer, clock: FakeClock) -> None:
    kid = issuer.add_key()
    issuer.fail_status = 503
    backoff = Backoff(initial=10, maximum=40, multiplier=2, jitter=0)
    async with _verifier(issuer, clock, jwks_url=JWKS_URL, backoff=backoff) as verifier:
        token = issuer.token(kid)
        seen = []
        for step in (0, 0, 10, 0, 10, 10, 20, 40, 39, 1, 40):
            clock.advance(step)
            with pytest.raises(JWKSUnavailableError):
                await verifier.verify(token)
            seen.append(issuer.fetches)
        # attempts at t=0, 10, 30, 90, 130, 170: waits of 10, 20, 40, then capped at 40
        assert seen == [1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6]
