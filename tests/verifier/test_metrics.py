"""Counters, the on_event hook and the Prometheus collector."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from keyturn.clock import FakeClock
from keyturn.errors import BadSignatureError, ExpiredTokenError, UnknownKidError
from keyturn.verifier import AsyncVerifier, CacheOptions, Verifier, VerifierEvent

from .conftest import ISSUER, FakeIssuer

MakeVerifier = Callable[..., Verifier]


def _scenario(issuer: FakeIssuer, clock: FakeClock, verifier: Verifier) -> None:
    kid = issuer.add_key()
    unpublished = issuer.add_key(publish=False)
    verifier.verify(issuer.token(kid))
    verifier.verify(issuer.token(kid))
    with pytest.raises(ExpiredTokenError):
        verifier.verify(issuer.token(kid, ttl=-100))
    with pytest.raises(UnknownKidError):
        verifier.verify(issuer.token(unpublished))
    good = issuer.token(kid)
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with pytest.raises(BadSignatureError):
        verifier.verify(tampered)
    clock.advance(400)
    verifier.verify(issuer.token(kid))  # a 304
    issuer.fail_status = 500
    clock.advance(400)
    verifier.verify(issuer.token(kid))  # stale
    verifier.revoke([kid])
    # A revocation fetches the JWKS at once (in its own thread): here a fifth fetch, failed.
    deadline = time.monotonic() + 5
    while verifier.metrics.snapshot().fetches < 5 and time.monotonic() < deadline:
        time.sleep(0.005)


def test_counters(issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier()
    _scenario(issuer, clock, verifier)
    snap = verifier.metrics.snapshot()
    # first; unknown kid (a 304); expiry (a 304); failed; after the revocation (failed)
    assert snap.fetches == 5
    assert snap.fetch_errors == 2
    assert snap.not_modified == 2
    assert snap.stale_served == 1
    assert snap.unknown_kids == 1
    assert snap.revocations == 1
    assert snap.fetch_seconds_total >= 0
    assert dict(snap.outcomes) == {
        "ok": 4,
        "expired": 1,
        "unknown_kid": 1,
        "bad_signature": 1,
    }


def test_a_metrics_subclass_overriding_ok_is_still_called(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    # The verifier counts successes through the counter's C method only when ``ok`` is the
    # stock one; a subclass hooking ``ok`` must not be skipped by that shortcut.
    from keyturn.verifier import VerifierMetrics

    calls: list[None] = []

    class Hooked(VerifierMetrics):
        def ok(self) -> None:
            calls.append(None)
            super().ok()

    metrics = Hooked()
    verifier = make_verifier(metrics=metrics)
    kid = issuer.add_key()
    verifier.verify(issuer.token(kid))
    verifier.verify(issuer.token(kid))
    assert len(calls) == 2
    assert metrics.snapshot().outcomes["ok"] == 2

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            cache=CacheOptions(background=False),
            clock=clock,
            metrics=metrics,
        ) as verifier:
            await verifier.verify(issuer.token(kid))

    asyncio.run(main())
    assert len(calls) == 3
    assert metrics.snapshot().outcomes["ok"] == 3
    stock = VerifierMetrics()
    stock.ok_counter()()
    assert stock.snapshot().outcomes["ok"] == 1


def test_on_event_sees_what_on_call_needs(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    events: list[VerifierEvent] = []
    verifier = make_verifier(on_event=events.append)
    _scenario(issuer, clock, verifier)
    names = [e.name for e in events]
    for name in ("fetch", "not_modified", "fetch_error", "stale", "unknown_kid", "revoked"):
        assert name in names, name
    rejected = [e.data for e in events if e.name == "rejected"]
    assert {r["code"] for r in rejected} == {"expired", "unknown_kid", "bad_signature"}
    error = next(e for e in events if e.name == "fetch_error")
    assert "500" in str(error.data["error"]) and error.data["failures"] == 1


def test_a_failing_hook_never_breaks_verification(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_event: VerifierEvent) -> None:
        raise RuntimeError("hook bug")

    kid = issuer.add_key()
    verifier = make_verifier(on_event=broken)
    assert verifier.verify(issuer.token(kid))["sub"] == "alice"
    assert "hook" in caplog.text


def test_prometheus_collector(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from keyturn.verifier.prometheus import register

    verifier = make_verifier()
    registry = CollectorRegistry()
    register(verifier, registry, labels={"issuer": "test"})
    _scenario(issuer, clock, verifier)
    text = generate_latest(registry).decode()
    assert 'keyturn_verifier_jwks_fetches_total{issuer="test"} 5.0' in text
    assert 'keyturn_verifier_jwks_fetch_errors_total{issuer="test"} 2.0' in text
    assert 'keyturn_verifier_jwks_not_modified_total{issuer="test"} 2.0' in text
    assert 'keyturn_verifier_jwks_fetch_seconds_count{issuer="test"} 5.0' in text
    assert 'keyturn_verifier_stale_served_total{issuer="test"} 1.0' in text
    assert 'keyturn_verifier_unknown_kids_total{issuer="test"} 1.0' in text
    ok = 'keyturn_verifier_verifications_total{issuer="test",outcome="success",reason="ok"} 4.0'
    expired = (
        'keyturn_verifier_verifications_total{issuer="test",outcome="failure",reason="expired"} 1.0'
    )
    assert ok in text
    assert expired in text


def test_lock_free_success_count_is_exact_under_concurrent_reads() -> None:
    """``ok`` counts without the lock; snapshots taken meanwhile must neither lose nor invent
    a success (reading the counter consumes a value, which the metrics subtract)."""
    import threading

    from keyturn.verifier import VerifierMetrics

    metrics = VerifierMetrics()
    per_thread, threads = 20_000, 4
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(metrics.snapshot().outcomes.get("ok", 0))

    def writer() -> None:
        for _ in range(per_thread):
            metrics.ok()

    r = threading.Thread(target=reader)
    r.start()
    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    r.join()
    metrics.outcome("bad_signature")
    final = metrics.snapshot().outcomes
    assert final["ok"] == per_thread * threads
    assert final["bad_signature"] == 1
    assert seen == sorted(seen)  # never runs backwards
    assert all(0 <= n <= per_thread * threads for n in seen)


def test_prometheus_adapter_without_prometheus_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from keyturn.verifier._metrics import VerifierMetrics
    from keyturn.verifier.prometheus import VerifierCollector, register

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails like uninstalled
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'keyturn\[prometheus\]'"):
        register(VerifierMetrics())
    with pytest.raises(ModuleNotFoundError, match="prometheus_client"):
        VerifierCollector(VerifierMetrics())
