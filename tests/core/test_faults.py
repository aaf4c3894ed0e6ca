"""A crash between any two statements of a key-ring change leaves a consistent ring.

The store's ``fault_hook`` runs before every SQL statement; the test makes it raise at the
n-th statement, for every n the operation issues, and checks that the ring on disk is exactly
what it was before (every change is one transaction).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.keys.sealing import Sealer
from keyturn.ring.model import KeyState, Policy
from keyturn.service import KeyService
from keyturn.store.sql import SqlStore


class Crash(Exception):
    pass


class FaultAt:
    def __init__(self) -> None:
        self.n: int | None = None
        self.count = 0

    def __call__(self, statement: str) -> None:
        self.count += 1
        if self.n is not None and self.count == self.n:
            raise Crash(f"injected crash before statement {self.n}: {statement[:40]}")


def snapshot(service: KeyService) -> tuple[object, ...]:
    tenant, ring = service.ring("acme")
    ring.check_invariants()
    audit = len(service.store.audit_records(tenant="acme", limit=10_000))
    return (
        tenant.key_version,
        tuple(sorted((k.kid, k.state, k.sealed_private) for k in ring.keys)),
        audit,
    )


def shape(snap: tuple[object, ...], base: tuple[object, ...]) -> tuple[object, ...]:
    """What a change did, independent of the random kids: deltas and the states it left."""
    version, keys, audit = snap
    version0, _, audit0 = base
    states = sorted((str(state), blob is not None) for _, state, blob in keys)  # type: ignore[attr-defined]
    return version - version0, audit - audit0, states  # type: ignore[operator]


def _rotate(s: KeyService) -> object:
    return s.rotate("acme", actor="t")


def _rotate_and_revoke(s: KeyService) -> object:
    return s.rotate_and_revoke("acme", reason="leak", actor="t")


def _revoke_all(s: KeyService) -> object:
    return s.revoke_all("acme", reason="leak", actor="t")


def _revoke_previous(s: KeyService) -> object:
    _, ring = s.ring("acme")
    return s.revoke("acme", ring.by_state(KeyState.PREVIOUS)[0].kid, reason="x", actor="t")


def _sweep(s: KeyService) -> object:
    assert isinstance(s.clock, FakeClock)
    s.clock.advance(40 * 86400)
    return s.sweep_tenant("acme")


def _sweep_batch(s: KeyService) -> object:
    assert isinstance(s.clock, FakeClock)
    s.clock.advance(40 * 86400)
    return s.sweep()


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(_rotate, id="rotate"),
        pytest.param(_rotate_and_revoke, id="rotate-and-revoke"),
        pytest.param(_revoke_all, id="revoke-all"),
        pytest.param(_revoke_previous, id="revoke-previous"),
        pytest.param(_sweep, id="sweep-rotate-and-retire"),
        pytest.param(_sweep_batch, id="batched-sweep"),
    ],
)
def test_crash_at_every_statement_leaves_ring_unchanged(
    db_url: str, sealer: Sealer, op: Callable[[KeyService], object]
) -> None:
    fault = FaultAt()
    store = SqlStore(db_url, fault_hook=fault)
    store.migrate()
    try:
        clock = FakeClock()
        svc = KeyService(store, sealer, clock)
        svc.create_tenant(
            "acme", issuer="https://i.example", policy=Policy(alg=Alg.ES256), actor="t"
        )
        svc.rotate("acme", actor="t")
        # Measure how many statements the operation issues when nothing fails.
        before = snapshot(svc)
        start_time = clock.now()
        fault.count = 0
        op(svc)
        total = fault.count
        assert total > 3
        after_ok = snapshot(svc)
        assert after_ok != before
        # Undo by building the same starting point again for each crash point.
        for n in range(1, total + 1):
            store.engine.dispose()
            fresh = (
                SqlStore(db_url.replace("keyturn.db", f"keyturn-{n}.db"), fault_hook=fault)
                if db_url.startswith("sqlite")
                else None
            )
            if fresh is None:
                _reset_pg(store)
                fresh = store
            else:
                fresh.migrate()
            fault.n = None
            clock.set(start_time - 0.0)
            s2 = KeyService(fresh, sealer, clock)
            s2.create_tenant(
                "acme", issuer="https://i.example", policy=Policy(alg=Alg.ES256), actor="t"
            )
            s2.rotate("acme", actor="t")
            pre = snapshot(s2)
            fault.count = 0
            fault.n = n
            with pytest.raises(Crash):
                op(s2)
            fault.n = None
            got = snapshot(s2)
            # All or nothing: unchanged, or (a crash after the commit, e.g. in the sweep's
            # final "anything left?" read) exactly what a clean run does.
            assert got == pre or shape(got, pre) == shape(after_ok, before), (
                f"crash before statement {n} of {total} left a partial change"
            )
            if fresh is not store:
                fresh.dispose()
    finally:
        store.dispose()


def _reset_pg(store: SqlStore) -> None:
    from keyturn.store import schema

    with store.write() as tx:
        for table in (schema.audit, schema.keys, schema.tenants):
            tx.conn.execute(table.delete())
