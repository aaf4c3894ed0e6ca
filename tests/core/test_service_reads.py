"""The reads KeyService gives the faces, so none of them opens a store transaction itself."""

from __future__ import annotations

from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyState, Policy
from keyturn.service import KeyService

POLICY = Policy(
    alg=Alg.EdDSA, rotation_period=86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
)


def test_reads(service: KeyService, clock: FakeClock) -> None:
    start = clock.now()
    service.create_tenant("acme", issuer="https://acme.test", policy=POLICY, actor="t")
    service.create_tenant("beta", issuer="https://beta.test", policy=POLICY, actor="t")
    acme, beta = service.tenant("acme"), service.tenant("beta")

    published = service.published_keys([acme, beta])
    assert {
        name: sorted(k.state.value for k in published[t.id])
        for name, t in (("acme", acme), ("beta", beta))
    } == {"acme": ["current", "next"], "beta": ["current", "next"]}
    assert service.published_keys([]) == {}

    _, keys = service.public_keys("acme")
    assert sorted(k.state for k in keys) == sorted([KeyState.CURRENT, KeyState.NEXT])
    assert service.key_versions() == {"acme": acme.key_version, "beta": beta.key_version}

    recs = service.audit_records(tenant="acme", event_name="tenant.created")
    assert [(r.tenant, r.event, r.actor) for r in recs] == [("acme", "tenant.created", "t")]
    assert service.verify_audit_chain() == []

    clock.advance(100)
    rows, total = service.rotation_rows(1)
    assert total == 2 and len(rows) == 1
    assert rows[0].tenant == "acme"  # same due time: by name
    assert rows[0].current_activated_at == start
    assert (rows[0].rotation_period, rows[0].jwks_max_age, rows[0].clock_skew) == (86400, 600, 60)
    assert service.api_keys() is service.api_keys()


def test_monotonic_time_comes_from_the_clock(clock: FakeClock) -> None:
    before = clock.monotonic()
    clock.advance(30)
    assert clock.monotonic() - before >= 30
    clock.advance(-5)  # wall time may be set back; intervals never run backwards
    assert clock.monotonic() - before >= 30
