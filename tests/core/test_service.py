"""Key service on both databases: every transition, its audit record, and the safety rules."""

from __future__ import annotations

import pytest

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import thumbprint
from keyturn.keys.sealing import MasterKey, Sealer
from keyturn.ring.model import KeyState, Policy
from keyturn.service import KeyService

ISSUER = "https://issuer.example/t/acme"
POLICY = Policy(
    alg=Alg.ES256, rotation_period=7 * 86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
)


def make(service: KeyService, name: str = "acme", policy: Policy = POLICY) -> None:
    service.create_tenant(name, issuer=ISSUER, policy=policy, actor="test")


def states(service: KeyService, name: str = "acme") -> dict[str, str]:
    _, ring = service.ring(name)
    return {k.kid: k.state.value for k in ring.keys}


def test_create_tenant_has_current_and_next(service: KeyService) -> None:
    make(service)
    _, ring = service.ring("acme")
    ring.check_invariants()
    assert ring.current is not None and ring.next is not None
    assert [k["kid"] for k in service.jwks("acme")["keys"]] == [ring.current.kid, ring.next.kid]
    events = [r.event for r in service.store.audit_records(tenant="acme", newest_first=False)]
    assert events == ["tenant.created", "key.created", "key.created"]


def test_duplicate_and_invalid_tenant(service: KeyService) -> None:
    make(service)
    with pytest.raises(E.TenantExistsError):
        make(service)
    with pytest.raises(E.InvalidInputError):
        make(service, "Not_A_Slug")
    with pytest.raises(E.TenantNotFoundError):
        service.ring("nope")


def test_unsafe_policy_refused_with_numbers_and_forced_is_audited(service: KeyService) -> None:
    bad = Policy(
        alg=Alg.ES256, rotation_period=300, token_ttl=3600, jwks_max_age=600, clock_skew=60
    )
    with pytest.raises(E.UnsafePolicyError) as info:
        make(service, policy=bad)
    assert (
        "pre-publication" in info.value.detail
        and "5m" in info.value.detail
        and "11m" in info.value.detail
    )
    with pytest.raises(E.TenantNotFoundError):
        service.tenant("acme")
    res = service.create_tenant("acme", issuer=ISSUER, policy=bad, force=True, actor="test")
    assert res.violations and res.tenant.policy_forced
    assert service.store.audit_records(tenant="acme", event_name="policy.forced")


def test_rotate_moves_every_state(service: KeyService, clock: FakeClock) -> None:
    make(service)
    _, ring = service.ring("acme")
    cur, nxt = ring.current, ring.next
    assert cur and nxt
    clock.advance(7 * 86400)
    res = service.rotate("acme", actor="test")
    assert not res.warnings  # next was published for a week: no early-rotation warning
    _, ring = service.ring("acme")
    assert ring.current and ring.current.kid == nxt.kid
    prev = ring.get(cur.kid)
    assert prev.state == KeyState.PREVIOUS
    assert prev.retire_after == clock.now() + POLICY.retention
    assert ring.next and ring.next.kid not in (cur.kid, nxt.kid)
    assert {k["kid"] for k in service.jwks("acme")["keys"]} == {cur.kid, nxt.kid, ring.next.kid}


def test_early_rotation_warns_with_durations(service: KeyService, clock: FakeClock) -> None:
    make(service)
    clock.advance(60)
    res = service.rotate("acme", actor="test")
    assert any("published for only 1m" in w and "10m" in w for w in res.warnings)


def test_rotate_if_current_is_compare_and_swap(service: KeyService) -> None:
    make(service)
    _, ring = service.ring("acme")
    assert ring.current
    old = ring.current.kid
    service.rotate("acme", actor="a", if_current=old)
    with pytest.raises(E.ConcurrentChangeError):
        service.rotate("acme", actor="b", if_current=old)
    assert len(service.store.audit_records(tenant="acme", event_name="key.rotated")) == 1


def test_retire_after_retention_destroys_private_material(
    service: KeyService, clock: FakeClock
) -> None:
    make(service)
    _, ring = service.ring("acme")
    old = ring.current
    assert old
    service.rotate("acme", actor="test")
    clock.advance(POLICY.retention - 1)
    service.retire_due("acme", actor="test")
    assert states(service)[old.kid] == "previous"
    clock.advance(1)
    service.retire_due("acme", actor="test")
    rec = service.find_key("acme", old.kid)
    assert (
        rec.state == KeyState.RETIRED
        and rec.sealed_private is None
        and rec.retired_at == clock.now()
    )
    assert old.kid not in {k["kid"] for k in service.jwks("acme")["keys"]}


def test_revoke_current_promotes_next_and_unpublishes_at_once(service: KeyService) -> None:
    make(service)
    token, _ = service.sign("acme", {"sub": "alice"})
    _, ring = service.ring("acme")
    cur, nxt = ring.current, ring.next
    assert cur and nxt
    res = service.rotate_and_revoke("acme", reason="key leaked", actor="test")
    assert any("rejected from now on" in w for w in res.warnings)
    _, ring = service.ring("acme")
    assert ring.current and ring.current.kid == nxt.kid
    rec = ring.get(cur.kid)
    assert rec.state == KeyState.REVOKED and rec.sealed_private is None
    assert rec.revocation_reason == "key leaked"
    assert cur.kid not in {k["kid"] for k in service.jwks("acme")["keys"]}
    with pytest.raises(E.RevokedKidError):
        service.verify("acme", token)
    audit = service.store.audit_records(tenant="acme", event_name="key.revoked")
    assert audit[0].kid == cur.kid and audit[0].reason == "key leaked"


@pytest.mark.parametrize("which", ["next", "previous"])
def test_revoke_next_or_previous(service: KeyService, which: str) -> None:
    make(service)
    service.rotate("acme", actor="test")
    _, ring = service.ring("acme")
    target = ring.next if which == "next" else ring.by_state(KeyState.PREVIOUS)[0]
    assert target
    service.revoke("acme", target.kid, reason="test", actor="test")
    _, ring = service.ring("acme")
    ring.check_invariants()
    assert ring.get(target.kid).state == KeyState.REVOKED
    assert ring.next is not None  # a revoked next is replaced at once
    with pytest.raises(E.InvalidTransitionError):
        service.revoke("acme", target.kid, reason="again", actor="test")


def test_revoke_needs_reason_and_known_kid(service: KeyService) -> None:
    make(service)
    _, ring = service.ring("acme")
    assert ring.current
    with pytest.raises(E.InvalidInputError):
        service.revoke("acme", ring.current.kid, reason="  ", actor="test")
    with pytest.raises(E.KeyNotFoundError):
        service.revoke("acme", "no-such-kid", reason="x", actor="test")


def test_revoke_all_replaces_everything_in_one_go(service: KeyService) -> None:
    make(service)
    service.rotate("acme", actor="test")
    _, before = service.ring("acme")
    published = {k.kid for k in before.published}
    res = service.revoke_all("acme", reason="store leaked", actor="test")
    assert any("until their cached JWKS expires" in w and "11m" in w for w in res.warnings)
    _, ring = service.ring("acme")
    ring.check_invariants()
    assert all(ring.get(k).state == KeyState.REVOKED for k in published)
    assert {k.kid for k in ring.published}.isdisjoint(published)
    assert len(ring.published) == 2


def test_sign_and_verify_with_claims_and_lifetime_cap(
    service: KeyService, clock: FakeClock
) -> None:
    make(service)
    token, claims = service.sign("acme", {"sub": "alice", "aud": "api"}, ttl=600)
    assert claims["iss"] == ISSUER and claims["exp"] - claims["iat"] == 600 and claims["jti"]
    verified, kid = service.verify("acme", token, audience="api")
    assert verified["sub"] == "alice"
    with pytest.raises(E.AudienceMismatchError):
        service.verify("acme", token, audience="other")
    with pytest.raises(E.TokenLifetimeError):
        service.sign("acme", {"sub": "x"}, ttl=3601)
    with pytest.raises(E.TokenLifetimeError):
        service.sign("acme", {"sub": "x", "exp": int(clock.now()) + 7200})
    with pytest.raises(E.InvalidInputError):
        service.sign("acme", {"iat": 1})
    with pytest.raises(E.InvalidInputError):
        service.sign("acme", {"iss": "https://evil"})
    with pytest.raises(E.InvalidInputError):
        service.sign("acme", {"big": "x" * 9000})
    for bad_nbf in (1e300, float("nan"), True, "soon", clock.now() + 7200):
        with pytest.raises(E.InvalidInputError, match="nbf"):
            service.sign("acme", {"nbf": bad_nbf})
    clock.advance(600 + POLICY.clock_skew)
    with pytest.raises(E.ExpiredTokenError):
        service.verify("acme", token, audience="api")


def test_token_from_previous_key_verifies_until_it_expires(
    service: KeyService, clock: FakeClock
) -> None:
    make(service)
    token, _ = service.sign("acme", {"sub": "alice"})
    clock.advance(3000)
    service.rotate("acme", actor="test")
    service.verify("acme", token)  # signed by what is now the previous key
    clock.advance(POLICY.retention)
    service.retire_due("acme", actor="test")
    with pytest.raises(E.TokenError):
        service.verify("acme", token)


def test_set_policy_extends_retention_never_shortens(service: KeyService, clock: FakeClock) -> None:
    make(service)
    service.rotate("acme", actor="test")
    _, ring = service.ring("acme")
    prev = ring.by_state(KeyState.PREVIOUS)[0]
    assert prev.retire_after is not None
    service.set_policy("acme", actor="test", token_ttl=4 * 3600)
    longer = service.find_key("acme", prev.kid).retire_after
    assert longer == prev.deactivated_at + 8 * 3600  # type: ignore[operator]
    service.set_policy("acme", actor="test", token_ttl=600)
    assert service.find_key("acme", prev.kid).retire_after == longer


def test_set_policy_alg_change_replaces_next_only(service: KeyService) -> None:
    make(service)
    _, ring = service.ring("acme")
    cur, nxt = ring.current, ring.next
    assert cur and nxt
    res = service.set_policy("acme", actor="test", alg=Alg.EdDSA)
    _, ring = service.ring("acme")
    assert ring.current and ring.current.kid == cur.kid and ring.current.alg == Alg.ES256
    assert ring.next and ring.next.alg == Alg.EdDSA
    assert ring.get(nxt.kid).state == KeyState.RETIRED
    assert res.tenant.policy.alg == Alg.EdDSA
    token, _ = service.sign("acme", {"sub": "a"})  # still ES256 until rotation
    assert service.verify("acme", token)[1] == cur.kid


def test_unsafe_policy_change_refused_nothing_changed(service: KeyService) -> None:
    make(service)
    with pytest.raises(E.UnsafePolicyError):
        service.set_policy("acme", actor="test", jwks_max_age=30 * 86400)
    assert service.tenant("acme").policy == POLICY
    with pytest.raises(E.InvalidInputError):
        service.set_policy("acme", actor="test", bogus=1)


@pytest.mark.parametrize("as_state", [KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS])
def test_import_places_key(service: KeyService, as_state: KeyState) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    make(service)
    key = generate_private_key(Alg.ES256)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    if as_state == KeyState.NEXT:
        # The tenant has a next key: replacing it is refused unless asked for.
        with pytest.raises(E.InvalidTransitionError, match="--replace-next"):
            service.import_key("acme", pem, actor="test", as_state=as_state)
    res = service.import_key(
        "acme", pem, actor="test", as_state=as_state, replace_next=as_state == KeyState.NEXT
    )
    if as_state == KeyState.NEXT:
        assert any("private key destroyed" in w for w in res.warnings)
    kid = thumbprint(key)
    _, ring = service.ring("acme")
    ring.check_invariants()
    rec = ring.get(kid)
    assert rec.state == as_state and rec.origin == "imported"
    if as_state == KeyState.CURRENT:
        assert res.warnings
        token, _ = service.sign("acme", {"sub": "a"})
        assert service.verify("acme", token)[1] == kid
    if as_state == KeyState.PREVIOUS:
        assert rec.sealed_private is None  # never signs again: no private material kept
    with pytest.raises(E.InvalidTransitionError):
        service.import_key("acme", pem, actor="test", as_state=as_state, replace_next=True)


def test_import_refuses_key_for_other_algorithm(service: KeyService) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    make(service)
    key = generate_private_key(Alg.EdDSA)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    before = states(service)
    with pytest.raises(E.InvalidKeyError, match="ES256 needs a EC P-256 key"):
        service.import_key("acme", pem, actor="test")
    with pytest.raises(E.InvalidKeyError):
        service.import_key(
            "acme", b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", actor="t"
        )
    assert states(service) == before


def test_master_key_reseal_and_wrong_key(service: KeyService, store, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    make(service)
    old_keys = service.sealer.keys
    new = Sealer([MasterKey.generate(), *old_keys])
    assert service.reseal_all(new, actor="test") == 2
    # Only the new key is needed now.
    only_new = KeyService(store, Sealer([new.keys[0]]), clock)
    token, _ = only_new.sign("acme", {"sub": "a"})
    assert only_new.verify("acme", token)
    wrong = KeyService(store, Sealer(old_keys), clock)
    with pytest.raises(E.MasterKeyError, match="not configured"):
        wrong.sign("acme", {"sub": "a"})
    # Same id but different secret cannot happen (id derives from the key); a tampered blob:
    from sqlalchemy import update

    from keyturn.store import schema

    with store.write() as tx:
        tx.conn.execute(
            update(schema.keys)
            .values(sealed_private=b"\x00" * 64)
            .where(schema.keys.c.state == "current")
        )
    fresh = KeyService(store, Sealer([new.keys[0]]), clock)
    with pytest.raises(E.MasterKeyError, match="wrong master key or tampered"):
        fresh.sign("acme", {"sub": "a"})


def test_audit_chain_is_tamper_evident(service: KeyService, store) -> None:  # type: ignore[no-untyped-def]
    make(service)
    service.rotate("acme", actor="alice", reason="scheduled")
    assert store.verify_audit_chain() == []
    from sqlalchemy import update

    from keyturn.store import schema

    with store.write() as tx:
        tx.conn.execute(
            update(schema.audit)
            .values(actor="mallory")
            .where(schema.audit.c.event == "key.rotated")
        )
    problems = store.verify_audit_chain()
    assert problems and "contents do not match" in problems[0]


def test_sweep_rotates_due_tenants_once(service: KeyService, clock: FakeClock) -> None:
    make(service, "a")
    make(service, "b", Policy(alg=Alg.EdDSA, rotation_period=30 * 86400))
    clock.advance(7 * 86400)
    changed = service.sweep()
    assert [r.tenant.name for r in changed] == ["a"]
    assert service.sweep() == []
    clock.advance(POLICY.retention)
    changed = service.sweep()
    assert [e.event for r in changed for e in r.change.events] == ["key.retired"]


def test_batched_sweep_over_many_tenants(service: KeyService, clock: FakeClock) -> None:
    fast = Policy(
        alg=Alg.EdDSA, rotation_period=86400, token_ttl=600, jwks_max_age=300, clock_skew=30
    )
    for i in range(25):
        make(service, f"t{i:02d}", fast if i % 2 else POLICY)
    clock.advance(86400)
    changed = service.sweep(batch=4)
    assert sorted(r.tenant.name for r in changed) == [f"t{i:02d}" for i in range(1, 25, 2)]
    for i in range(25):
        _, ring = service.ring(f"t{i:02d}")
        ring.check_invariants()
        assert len(ring.by_state(KeyState.PREVIOUS)) == i % 2
    assert service.sweep(batch=4) == []
    assert len(service.store.audit_records(event_name="key.rotated", limit=100)) == 12
    assert service.store.verify_audit_chain() == []


def test_changes_by_another_process_reach_signing_within_the_revalidation_window(
    service: KeyService, store, sealer: Sealer, clock: FakeClock
) -> None:  # type: ignore[no-untyped-def]
    from tests.waiting import wait_until

    make(service)
    service.revalidate_after = 0.2
    other = KeyService(store, sealer, clock)  # as the CLI would be: same database, own cache
    _, first = service.sign("acme", {"sub": "a"})
    first_kid = service.verify("acme", service.sign("acme", {"sub": "a"})[0])[1]
    other.rotate_and_revoke("acme", reason="leak", actor="cli")

    def signed_by_new_key() -> str | None:
        token, _ = service.sign("acme", {"sub": "a"})
        try:
            kid = service.verify("acme", token)[1]
        except E.RevokedKidError:  # signed just before the window ended, verified just after
            return None
        return token if kid != first_kid else None

    # Once the 0.2 s window has passed the change is seen (bounded, not a sleep of 0.25 s).
    token = wait_until(signed_by_new_key, bound=10, what="signing with the promoted key")
    assert service.verify("acme", token)[1] != first_kid
    assert first["iss"] == ISSUER
