"""CacheCore, the verifier cache's rules without I/O, with literal times (issue #20).

Written against the survivors of the 2026-12-02 mutation run (docs/mutation.md): freshness
and the stale-if-error limit at their boundaries, backoff, the unknown-kid budget (cooldown
30 s, fresh cooldown 1 s), the negative cache (2 entries, 300 s), revocation, and the events
each step reports. No jitter anywhere, so every time below is exact.
"""

from __future__ import annotations

import random

import pytest

from keyturn.errors import DiscoveryError, JWKSUnavailableError
from keyturn.keys.algorithms import Alg
from keyturn.tokens import KeySet
from keyturn.verifier._core import CacheCore
from keyturn.verifier._http import FetchResult
from keyturn.verifier._metrics import VerifierEvent
from keyturn.verifier._options import Backoff, CacheOptions, JWKSConfig, UnknownKidOptions
from tests.keys.material import jwk_of, keyset_of

URL = "https://issuer.test/.well-known/jwks.json"
A, B = jwk_of(Alg.ES256, 0), jwk_of(Alg.ES256, 1)
KID_A, KID_B = A["kid"], B["kid"]


def core(events: list[VerifierEvent] | None = None) -> CacheCore:
    config = JWKSConfig(
        jwks_url=URL,
        cache=CacheOptions(
            min_max_age=60,
            max_max_age=86400,
            default_max_age=300,
            refresh_ahead=0.25,
            jitter=0.0,
            stale_if_error=600,
        ),
        backoff=Backoff(initial=1, multiplier=2, maximum=300, jitter=0.0),
        unknown_kid=UnknownKidOptions(
            cooldown=30, fresh_cooldown=1, negative_cache_size=2, negative_ttl=300
        ),
        rng=random.Random(0),
        on_event=None if events is None else events.append,
    )
    return CacheCore(config)


def ok(keyset: KeySet | None = None, max_age: float | None = 300) -> FetchResult:
    kind = "ok" if keyset is not None else "not_modified"
    return FetchResult(kind, keyset, '"e1"', max_age, 0.25)  # type: ignore[arg-type]


def test_times_of_a_fetched_set_and_the_freshness_boundary() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    c.record_success(ok(keyset_of(A, B)), URL, 1000)
    s = c.status()
    assert (s.fetched_at, s.expires_at, s.refresh_at, s.stale_until) == (1000, 1300, 1225, 1900)
    assert s.kids == tuple(sorted([KID_A, KID_B])) and s.etag == '"e1"' and s.url == URL
    assert c.fresh(1299.5) is not None
    assert c.fresh(1300) is None  # expires_at itself is past the lifetime
    assert events[-1].name == "fetch"
    assert dict(events[-1].data) == {
        "url": URL,
        "kids": tuple(sorted([KID_A, KID_B])),
        "max_age": 300,
        "seconds": 0.25,
    }
    assert c.config.metrics.snapshot().fetches == 1


@pytest.mark.parametrize(("max_age", "lifetime"), [(10, 60), (None, 300), (10**6, 86400)])
def test_max_age_is_clamped(max_age: float | None, lifetime: float) -> None:
    c = core()
    c.record_success(ok(keyset_of(A), max_age), URL, 0)
    assert c.status().expires_at == lifetime


def test_stale_if_error_up_to_its_limit_then_unavailable() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    with pytest.raises(JWKSUnavailableError) as none_yet:
        c.usable(0)
    assert none_yet.value.detail == "no key set has been fetched yet"
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.usable(1299) is not None and events[-1].name == "fetch"  # fresh: no event
    assert KID_A in c.usable(1300).keys  # expired: served stale
    assert events[-1].name == "stale" and events[-1].data == {"url": URL, "expired_for": 0}
    assert c.config.metrics.snapshot().stale_served == 1
    assert c.usable(1899.5) is not None
    with pytest.raises(JWKSUnavailableError) as gone:
        c.usable(1900)
    assert gone.value.detail == (
        "the key set expired 600s ago and is past its stale-if-error limit of 600s"
    )
    assert type(gone.value) is JWKSUnavailableError and gone.value.extra == {"url": URL}


def test_backoff_after_failures_and_the_reset_on_success() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    c.record_success(ok(keyset_of(A)), URL, 1000)
    c.record_failure(DiscoveryError("boom", url=URL), 0.5, 2000)
    assert c.in_backoff(2000.99) and not c.in_backoff(2001)  # 1 s after the first failure
    assert events[-1].name == "fetch_error"
    assert dict(events[-1].data) == {"url": URL, "error": "boom", "failures": 1, "retry_in": 1}
    c.record_failure(DiscoveryError("boom", url=URL), 0.5, 2001)
    assert c.in_backoff(2002.99) and not c.in_backoff(2003)  # then 2 s
    s = c.status()
    assert (s.failures, s.retry_at, s.last_error) == (2, 2003, "discovery_failed: boom")
    assert c.unreachable_detail() == "discovery_failed: boom"
    assert c.rediscover is True
    assert s.kids == (KID_A,)  # a failed fetch never wipes the set
    with pytest.raises(DiscoveryError) as why:  # the most specific class is kept
        c.usable(1900)
    assert why.value.detail == (
        "the key set expired 600s ago and is past its stale-if-error limit of 600s"
        "; last fetch error: discovery_failed: boom"
    )
    assert why.value.extra == {"url": URL}
    c.record_success(ok(keyset_of(A)), URL, 2003)
    s = c.status()
    assert (s.failures, s.retry_at, s.last_error) == (0, None, None)
    assert c.unreachable_detail() is None and not c.in_backoff(2003)


def test_refresh_due_and_next_wake() -> None:
    c = core()
    assert c.refresh_due(0) and c.next_wake(0) == 0.05  # no set yet: at once
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.next_wake(1000) == 225
    assert not c.refresh_due(1224.9)
    assert c.refresh_due(1225)
    c.record_failure(DiscoveryError("x", url=URL), 0, 1225)
    assert not c.refresh_due(1225.5)  # inside the backoff
    assert c.next_wake(1225.5) == 0.5
    assert c.refresh_due(1226)


def test_a_304_keeps_the_set_and_restarts_its_lifetime() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    with pytest.raises(JWKSUnavailableError) as no_set:
        c.record_success(ok(None), URL, 0)  # 304 with no set: never accepted
    assert no_set.value.detail == "304 Not Modified without a cached key set"
    c.record_success(ok(keyset_of(A)), URL, 1000)
    c.after_unknown("gone", 1000)
    c.record_success(ok(None, max_age=120), URL, 1250)
    s = c.status()
    assert s.kids == (KID_A,) and (s.fetched_at, s.expires_at) == (1250, 1370)
    assert events[-1].name == "not_modified"
    assert c.negative_size() == 1  # the same set: the remembered miss stays
    assert c.config.metrics.snapshot().not_modified == 1


def test_a_new_set_forgets_the_remembered_misses_the_same_set_does_not() -> None:
    c = core()
    c.record_success(ok(keyset_of(A)), URL, 1000)
    c.after_unknown("x", 1000)
    c.record_success(ok(keyset_of(A)), URL, 1010)
    assert c.negative_size() == 1
    c.record_success(ok(keyset_of(A, B)), URL, 1020)
    assert c.negative_size() == 0


@pytest.mark.parametrize(
    ("iat", "expected"),
    [(999, False), (1000, False), (1000.5, True), (2000, True), (True, False), ("1500", False)],
)
def test_issued_after_fetch(iat: object, expected: bool) -> None:
    c = core()
    assert c.issued_after_fetch(5) is True  # no set yet: any numeric iat is after it
    assert c.issued_after_fetch(False) is False
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.issued_after_fetch(iat) is expected


def test_unknown_kid_budget_cooldown_fresh_cooldown_and_backoff() -> None:
    c = core()
    assert c.take_unknown_budget(1000) is True
    assert c.take_unknown_budget(1029.9) is False
    assert c.take_unknown_budget(1029.9, fresh=True) is True  # fresh: once per 1 s
    assert c.take_unknown_budget(1029.95, fresh=True) is False  # 0.05 s after it
    assert c.take_unknown_budget(1030, fresh=False) is True  # 30 s after 1000
    assert c.take_unknown_budget(1030.9, fresh=True) is False  # the fetch at 1030 counts
    assert c.take_unknown_budget(1031, fresh=True) is True
    c.record_failure(DiscoveryError("x", url=URL), 0, 2000)
    assert c.take_unknown_budget(2000.5) is False  # backoff: not even a fresh token
    assert c.take_unknown_budget(2000.5, fresh=True) is False
    assert c.take_unknown_budget(2001) is True


def test_negative_cache_times_out_and_keeps_the_newest_two() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.after_unknown(KID_A, 1000) is not None  # present: nothing remembered
    assert c.negative_size() == 0
    assert c.after_unknown("x", 1000) is None
    assert c.unknown_verdict("x", 1299.9) == "negative"
    assert events[-1] == VerifierEvent("unknown_kid", {"kid": "x", "negative": True})
    assert c.unknown_verdict("x", 1299.9, fresh=True) == "check"  # a newer token: no miss
    assert c.negative_size() == 0  # ...and the entry is gone
    c.after_unknown("x", 1000)
    assert c.unknown_verdict("x", 1300) == "check"  # 300 s later: forgotten
    assert events[-1] == VerifierEvent("unknown_kid", {"kid": "x", "negative": False})
    assert c.negative_size() == 0
    for kid in ("a", "b", "a", "c"):  # "a" seen again: newest; "b" is the oldest
        c.after_unknown(kid, 2000)
    assert c.negative_size() == 2
    assert c.unknown_verdict("b", 2001) == "check"
    assert c.unknown_verdict("a", 2001) == "negative"
    assert c.unknown_verdict("c", 2001) == "negative"
    assert c.config.metrics.snapshot().unknown_kids == 6


def test_no_negative_cache_when_its_size_or_ttl_is_zero() -> None:
    for size, ttl in ((0, 300.0), (2, 0.0)):
        config = JWKSConfig(
            jwks_url=URL,
            unknown_kid=UnknownKidOptions(negative_cache_size=size, negative_ttl=ttl),
        )
        c = CacheCore(config)
        c.record_success(ok(keyset_of(A)), URL, 1000)
        c.after_unknown("x", 1000)
        assert c.negative_size() == 0
        assert c.unknown_verdict("x", 1001) == "check"


def test_revoke_drops_at_once_reopens_the_budget_and_fetches() -> None:
    events: list[VerifierEvent] = []
    c = core(events)
    urgent: list[int] = []
    c.on_urgent = lambda: urgent.append(1)
    c.record_success(ok(keyset_of(A, B)), URL, 1000)
    assert c.take_unknown_budget(1000) is True
    c.after_unknown("x", 1000)
    assert c.revoke([KID_B, KID_A, KID_B], "feed") == sorted([KID_A, KID_B])
    assert c.status().kids == () and c.status().revoked == tuple(sorted([KID_A, KID_B]))
    assert events[-1] == VerifierEvent(
        "revoked", {"kids": tuple(sorted([KID_A, KID_B])), "source": "feed"}
    )
    assert urgent == [1]
    assert c.take_unknown_budget(1001) is True  # the cooldown starts again from nothing
    assert c.take_unknown_budget(1001.5, fresh=True) is False
    assert c.negative_size() == 0
    assert c.revoke([KID_A], "feed") == []  # already revoked: nothing new, no fetch
    assert urgent == [1]
    assert c.config.metrics.snapshot().revocations == 2
    c.record_success(ok(keyset_of(A, B)), URL, 1010)  # a refetch never re-admits them
    assert c.status().kids == ()


def test_revoke_resets_the_fresh_cooldown_too() -> None:
    c = core()
    c.record_success(ok(keyset_of(A, B)), URL, 1000)
    assert c.take_unknown_budget(1000, fresh=True) is True
    c.revoke([KID_A], "stream")
    assert c.take_unknown_budget(1000.2, fresh=True) is True  # not 1 s after the last


def test_a_failing_urgent_fetch_does_not_break_the_revocation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = core()

    def broken() -> None:
        raise RuntimeError("no loop")

    c.on_urgent = broken
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.revoke([KID_A], "feed") == [KID_A]
    assert c.status().kids == ()
    assert [r.getMessage() for r in caplog.records] == [
        "keyturn: could not start the JWKS fetch after a revocation"
    ]


def test_a_new_core_has_no_set_no_error_and_no_fetch_owner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = core()
    s = c.status()
    assert (s.kids, s.fetched_at, s.failures, s.retry_at, s.last_error) == ((), None, 0, None, None)
    assert c.rediscover is False and c.on_urgent is None
    c.record_success(ok(keyset_of(A)), URL, 1000)
    assert c.revoke([KID_A], "feed") == [KID_A]  # no owner to fetch: nothing logged
    assert caplog.records == []


def test_on_stale_gets_the_url_and_both_times() -> None:
    from keyturn.verifier._metrics import StaleInfo

    seen: list[StaleInfo] = []
    config = JWKSConfig(
        jwks_url=URL,
        cache=CacheOptions(jitter=0.0, default_max_age=300, stale_if_error=600),
        on_stale=seen.append,
    )
    c = CacheCore(config)
    c.record_success(ok(keyset_of(A)), URL, 1000)
    c.record_failure(DiscoveryError("down", url=URL), 0, 1300)
    c.usable(1450)
    assert seen == [StaleInfo(URL, 150, 450, "discovery_failed: down")]


def test_a_failure_that_is_not_a_jwks_error_reports_jwks_unavailable() -> None:
    from keyturn.errors import InvalidInputError

    c = core()
    c.record_failure(InvalidInputError("odd"), 0, 1000)
    with pytest.raises(JWKSUnavailableError) as info:
        c.usable(1001)
    assert type(info.value) is JWKSUnavailableError
    assert info.value.detail == (
        "no key set has been fetched yet; last fetch error: invalid_input: odd"
    )


def test_the_url_comes_from_discovery_when_no_jwks_url_is_configured() -> None:
    from types import SimpleNamespace

    c = CacheCore(JWKSConfig(issuer="https://issuer.test"))
    assert c.url() is None
    c.discovery = SimpleNamespace(jwks_uri="https://issuer.test/keys")  # type: ignore[assignment]
    assert c.url() == "https://issuer.test/keys"
