"""The two revocation layers, each tested without the other.

Layer 1: the per-token check refuses a revoked kid even when the key set still holds its key
(``verify_token(..., revoked={kid})``, the verifier's fast path). Layer 2: the verifier's cache
never holds a revoked kid's key, not even after a JWKS refetch that still lists it. Each layer
hides a break in the other, so each test here disables or sidesteps the other layer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from keyturn.clock import FakeClock
from keyturn.errors import RevokedKidError, UnknownKidError
from keyturn.keys import Alg
from keyturn.tokens import KeySet
from keyturn.tokens.jws import parse_compact
from keyturn.tokens.verify import verified_claims, verify_token
from keyturn.verifier import AsyncVerifier, CacheOptions, Verifier
from tests.waiting import wait_until

from .conftest import ISSUER, FakeIssuer

MakeVerifier = Callable[..., Verifier]
ES256 = frozenset({Alg.ES256})


# --- layer 1: the per-token check ---------------------------------------------------------


def test_verify_token_refuses_a_revoked_kid_that_is_in_the_key_set(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    keyset = KeySet.from_jwks(issuer.jwks_bytes())
    assert kid in keyset.keys  # the set itself would verify it
    token = issuer.token(kid)
    claims, _ = verify_token(token, keyset, algorithms=ES256, now=clock.now())
    assert claims["sub"] == "alice"
    with pytest.raises(RevokedKidError) as info:
        verify_token(token, keyset, algorithms=ES256, now=clock.now(), revoked={kid})
    assert info.value.code == "revoked_kid"
    assert info.value.extra["kid"] == kid


def test_verified_claims_fast_path_refuses_a_revoked_kid(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    """The core every verify path ends in, called as the verifier calls it."""
    kid = issuer.add_key()
    keyset = KeySet.from_jwks(issuer.jwks_bytes())
    parsed = parse_compact(issuer.token(kid), allowed_algs=ES256)
    with pytest.raises(RevokedKidError):
        verified_claims(parsed, keyset, frozenset({kid}), clock.now(), 60.0, None, None, ("exp",))


def test_verifier_refuses_a_revoked_kid_even_if_its_cache_held_the_key(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    """Layer 2 broken by hand (the key put back into the cache): layer 1 alone refuses."""
    kid = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(kid))
    full = verifier.cache.core.cached
    assert full is not None
    verifier.revoke([kid])
    core = verifier.cache.core
    core.cached = replace(full, expires_at=clock.now() + 300)  # the revoked key is back
    assert kid in core.fresh(clock.now()).keys  # type: ignore[union-attr]
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(kid))


def test_async_verifier_refuses_a_revoked_kid_even_if_its_cache_held_the_key(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            clock=clock,
            rng=random.Random(1),
            cache=CacheOptions(background=False),
        ) as verifier:
            await verifier.verify(issuer.token(kid))
            core = verifier.cache.core
            full = core.cached
            assert full is not None
            verifier.revoke([kid])
            core.cached = replace(full, expires_at=clock.now() + 300)
            with pytest.raises(RevokedKidError):
                await verifier.verify(issuer.token(kid))

    asyncio.run(main())


# --- layer 2: the cache -------------------------------------------------------------------


def _cached_kids(verifier: Verifier | AsyncVerifier, clock: FakeClock) -> set[str]:
    keyset = verifier.cache.core.fresh(clock.now())
    assert keyset is not None
    return set(keyset.keys)


def _refused_by_the_set_alone(keyset: KeySet, token: str, clock: FakeClock) -> None:
    """Layer 1 switched off (revoked=()): the cached set by itself must not verify."""
    parsed = parse_compact(token, allowed_algs=ES256)
    with pytest.raises(UnknownKidError):
        verified_claims(parsed, keyset, frozenset(), clock.now(), 60.0, None, None, ("exp",))


@pytest.mark.parametrize("etag", [True, False], ids=["refetch-304", "refetch-200"])
def test_refetch_does_not_readmit_a_revoked_kid_into_the_cache(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier, etag: bool
) -> None:
    doomed = issuer.add_key()
    other = issuer.add_key()
    issuer.use_etag = etag
    verifier = make_verifier()
    verifier.verify(issuer.token(doomed))
    verifier.revoke([doomed])
    assert _cached_kids(verifier, clock) == {other}
    # Since #12 a revocation fetches the set at once, off the caller's thread (a reload may
    # join that flight): the counts below only ask that each step did fetch.
    wait_until(lambda: issuer.fetches >= 2, bound=10, what="the revocation's fetch")
    assert _cached_kids(verifier, clock) == {other}
    start = issuer.fetches
    # The JWKS still lists the key: a reload, an expiry-driven refetch, an unknown-kid refresh.
    verifier.reload()
    assert _cached_kids(verifier, clock) == {other}
    clock.advance(301)
    verifier.verify(issuer.token(other))
    assert issuer.fetches > start  # the expired set was fetched again
    assert _cached_kids(verifier, clock) == {other}
    newer = issuer.add_key()
    before = issuer.fetches
    verifier.verify(issuer.token(newer))  # unknown kid: one more fetch
    assert issuer.fetches == before + 1
    assert _cached_kids(verifier, clock) == {other, newer}
    keyset = verifier.cache.core.fresh(clock.now())
    assert keyset is not None
    _refused_by_the_set_alone(keyset, issuer.token(doomed), clock)


def test_revocation_before_the_first_fetch_is_applied_to_it(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    doomed = issuer.add_key()
    other = issuer.add_key()
    verifier = make_verifier()
    verifier.revoke([doomed])  # e.g. pushed by the feed before any JWKS arrived
    verifier.verify(issuer.token(other))
    assert _cached_kids(verifier, clock) == {other}


def test_async_refetch_does_not_readmit_a_revoked_kid_into_the_cache(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    doomed = issuer.add_key()
    other = issuer.add_key()
    issuer.use_etag = False

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            clock=clock,
            rng=random.Random(1),
            cache=CacheOptions(background=False),
        ) as verifier:
            await verifier.verify(issuer.token(doomed))
            verifier.revoke([doomed])
            await verifier.reload()
            assert _cached_kids(verifier, clock) == {other}
            clock.advance(301)
            await verifier.verify(issuer.token(other))
            assert issuer.fetches == 3
            assert _cached_kids(verifier, clock) == {other}
            keyset = verifier.cache.core.fresh(clock.now())
            assert keyset is not None
            _refused_by_the_set_alone(keyset, issuer.token(doomed), clock)

    asyncio.run(main())
