"""Behaviour 3: refresh on an unknown kid only, behind a non-blocking cooldown and a negative cache."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.clock import FakeClock
from keyturn.errors import BadSignatureError, UnknownKidError
from keyturn.keys import Alg
from keyturn.tokens import TokenSigner
from keyturn.verifier import CacheOptions, UnknownKidOptions, Verifier
from tests.waiting import wait_until, waiters

from .conftest import ISSUER, JWKS_URL, START, FakeIssuer, _key

MakeVerifier = Callable[..., Verifier]


def _forged(issuer: FakeIssuer, kid: str, *, iat: int | None = None) -> str:
    """A well-formed token naming ``kid``, signed by a key the issuer never published."""
    now = int(issuer.clock.now())
    iat = now if iat is None else iat
    signer = TokenSigner(_key(Alg.ES256, 50), Alg.ES256, kid)
    return signer.sign({"iss": ISSUER, "sub": "mallory", "iat": iat, "exp": now + 60})


def test_unknown_kid_triggers_one_refresh_and_then_verifies(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    first = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(first))
    rotated = issuer.add_key()  # published after our fetch: a rotation we have not seen
    assert verifier.verify(issuer.token(rotated))["sub"] == "alice"
    assert issuer.fetches == 2
    assert verifier.metrics.snapshot().unknown_kids == 1


def test_bad_signature_of_a_known_kid_never_refreshes(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    forged = _forged(issuer, kid)
    for _ in range(5):
        with pytest.raises(BadSignatureError) as info:
            verifier.verify(forged)
        assert info.value.action == "reject"
    assert issuer.fetches == 1


def test_cooldown_is_not_waited_on(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier(unknown_kid=UnknownKidOptions(cooldown=30))
    verifier.verify(issuer.token(kid))
    with pytest.raises(UnknownKidError):
        verifier.verify(_forged(issuer, "random-1"))  # spends the refresh budget
    assert issuer.fetches == 2

    late = issuer.add_key()  # a real new key, inside the cooldown
    started = time.monotonic()
    with pytest.raises(UnknownKidError) as info:
        verifier.verify(issuer.token(late))
    assert time.monotonic() - started < 0.5, "callers must not wait for the cooldown to end"
    assert info.value.action == "try_refresh"
    assert issuer.fetches == 2

    clock.advance(30)
    assert verifier.verify(issuer.token(late))["sub"] == "alice"
    assert issuer.fetches == 3


def test_negative_cache_remembers_misses_and_is_bounded(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier(
        unknown_kid=UnknownKidOptions(cooldown=1, negative_cache_size=3, negative_ttl=100)
    )
    verifier.verify(issuer.token(kid))
    replayed = _forged(issuer, "retired-long-ago")
    with pytest.raises(UnknownKidError):
        verifier.verify(replayed)
    fetches = issuer.fetches
    for _ in range(5):  # long past the cooldown, but the same miss: no refresh
        clock.advance(10)
        with pytest.raises(UnknownKidError):
            verifier.verify(replayed)
    assert issuer.fetches == fetches

    for i in range(10):
        clock.advance(2)
        with pytest.raises(UnknownKidError):
            verifier.verify(_forged(issuer, f"random-{i}"))
    assert verifier.cache.core.negative_size() <= 3


def test_concurrent_unknown_kids_share_one_fetch(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    issuer.gate = threading.Event()
    new = issuer.add_key()
    results: list[str] = []

    def call(token: str) -> None:
        try:
            results.append(verifier.verify(token)["sub"])
        except UnknownKidError:
            results.append("unknown")

    tokens = [issuer.token(new)] * 5 + [_forged(issuer, f"r{i}") for i in range(5)]
    threads = [threading.Thread(target=call, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    # Every caller is blocked on the one refresh, whose fetch is held at the gate.
    flight = wait_until(lambda: verifier.cache._flight, what="the refresh to start")
    wait_until(lambda: waiters(flight.done) == 10, what="10 callers waiting on the refresh")
    assert issuer.fetches == 2
    issuer.gate.set()
    for t in threads:
        t.join()
    assert issuer.fetches == 2
    assert sorted(results) == ["alice"] * 5 + ["unknown"] * 5


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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
    # Replayed tokens (issued before the set was fetched) refresh at most once per cooldown;
    # tokens claiming to be newer than the set at most once per fresh_cooldown (issue #12: the
    # fresh key of a revoke-all must verify before the revocation reaches the verifier).
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

    with Verifier(
        algorithms=["ES256"],
        jwks_url=JWKS_URL,
        transport=httpx.MockTransport(handler),
        clock=clock,
        rng=random.Random(0),
        cache=CacheOptions(background=False),
        unknown_kid=UnknownKidOptions(cooldown=cooldown, fresh_cooldown=1.0),
    ) as verifier:
        verifier.cache.get()
        for advance, kid in steps:
            clock.advance(advance)
            iat = None if fresh else int(START) - 1
            with pytest.raises(UnknownKidError):
                verifier.verify(_forged(issuer, kid, iat=iat))
    flood = fetch_times[1:]
    assert all(b - a >= limit for a, b in itertools.pairwise(flood))
    elapsed = clock.now() - START
    assert len(flood) <= elapsed // limit + 1


def test_unknown_kid_while_the_jwks_is_unreachable_is_unavailable_not_unknown(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    """A kid we cannot look up during an outage is our problem (503), not the token's (401).

    Answering try_refresh would send every client for a new token signed by the same key we
    cannot see yet: a 401 wave caused by the verifier.
    """
    from keyturn.errors import JWKSUnavailableError

    known = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(known))
    issuer.fail_status = 503
    rotated = issuer.add_key()  # the issuer rotated while we cannot reach it
    with pytest.raises(JWKSUnavailableError) as info:
        verifier.verify(issuer.token(rotated))
    assert info.value.action == "retry"
    assert verifier.verify(issuer.token(known))["sub"] == "alice"  # the cached key still works
    issuer.fail_status = None
    clock.advance(3600)
    assert verifier.verify(issuer.token(rotated))["sub"] == "alice"
    with pytest.raises(UnknownKidError):  # reachable again: an unknown kid is the token's fault
        verifier.verify(_forged(issuer, "never-published"))
