"""Key-ring operations on a token-backed tenant, on SQLite and PostgreSQL.

Rotation, revoke and revoke-all work as for software keys; retire and revoke destroy the token
objects (audited); a token failure changes no key state.
"""

from __future__ import annotations

import os

import jwt
import pytest

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.keys.backends import BackendSpec
from keyturn.keys.generate import generate_private_key
from keyturn.ring.model import KeyState, Policy
from keyturn.service import KeyService

from .conftest import SoftHsm, token_objects

# These tests finalise the PKCS#11 module under live sessions (a token reset, a vanished
# device). python-pkcs11's operation finaliser then cancels on a module that is gone and the
# interpreter prints "Exception ignored"; that is the library tidying up, not a keyturn error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. 'pkcs11._pkcs11.OperationContext.__del__'"
    ":pytest.PytestUnraisableExceptionWarning"
)
ISSUER = "https://issuer.example/t/hsm"
POLICY = Policy(
    alg=Alg.ES256, rotation_period=7 * 86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
)


@pytest.fixture
def tenant(token_service: KeyService, softhsm: SoftHsm, request: pytest.FixtureRequest) -> str:
    # A name per test: the token is shared by the whole run, labels keep tests apart.
    name = "hsm-" + str(abs(hash(request.node.nodeid)) % 10**8)
    token_service.create_tenant(
        name,
        issuer=ISSUER,
        policy=POLICY,
        actor="test",
        key_backend=BackendSpec("pkcs11", softhsm.uri),  # type: ignore[arg-type]
    )
    return name


def _objects(softhsm: SoftHsm, name: str) -> set[str]:
    return {oid for oid, _ in token_objects(softhsm, f"keyturn:{name}:")}


def _states(svc: KeyService, name: str) -> dict[str, str]:
    _, ring = svc.ring(name)
    return {k.kid: k.state.value for k in ring.keys}


def _verify(svc: KeyService, name: str, token: str) -> dict[str, object]:
    jwk = next(
        k for k in svc.jwks(name)["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"]
    )
    # The fake clock is in 2027: PyJWT checks the signature and issuer, not the times.
    times = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    return jwt.decode(  # type: ignore[no-any-return]
        token, jwt.PyJWK(jwk).key, algorithms=["ES256"], issuer=ISSUER, options=times
    )


def test_ring_stores_object_ids_never_material(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    t, ring = token_service.ring(tenant)
    assert t.key_backend == BackendSpec("pkcs11", softhsm.uri)  # type: ignore[arg-type]
    for k in ring.keys:
        assert k.sealed_private is None and k.master_key_id is None
        assert k.token_object_id is not None and len(k.token_object_id) == 32
        assert k.token_label == f"keyturn:{tenant}:{k.kid}"
        assert k.public_view()["has_private_key"] is True
    # Two keys, each a private + public object in the token.
    assert _objects(softhsm, tenant) == {k.token_object_id for k in ring.keys}
    assert len(token_objects(softhsm, f"keyturn:{tenant}:")) == 4


def test_full_rotation_cycle_destroys_retired_objects(
    token_service: KeyService, tenant: str, softhsm: SoftHsm, clock: FakeClock
) -> None:
    svc = token_service
    _, ring = svc.ring(tenant)
    assert ring.current is not None and ring.next is not None
    first, second = ring.current, ring.next
    token, _ = svc.sign(tenant, {"sub": "alice"})
    assert jwt.get_unverified_header(token)["kid"] == first.kid
    assert _verify(svc, tenant, token)["sub"] == "alice"

    clock.advance(POLICY.rotation_period)
    svc.sweep()  # the scheduler's path rotates a token tenant too
    assert _states(svc, tenant)[first.kid] == "previous"
    assert _states(svc, tenant)[second.kid] == "current"
    token2, _ = svc.sign(tenant, {"sub": "bob"})
    assert jwt.get_unverified_header(token2)["kid"] == second.kid
    assert _verify(svc, tenant, token2)["sub"] == "bob"
    assert first.token_object_id in _objects(softhsm, tenant)  # previous still published

    clock.advance(POLICY.retention)
    svc.sweep()
    assert _states(svc, tenant)[first.kid] == "retired"
    assert first.token_object_id not in _objects(softhsm, tenant)
    destroyed = svc.store.audit_records(tenant=tenant, event_name="key.destroyed")
    assert [(r.kid, r.details["state"], r.details["token_object_id"]) for r in destroyed] == [
        (first.kid, "retired", first.token_object_id)
    ]
    _, ring = svc.ring(tenant)
    ring.check_invariants()
    assert {k.token_object_id for k in ring.keys if k.state != KeyState.RETIRED} == _objects(
        softhsm, tenant
    )


def test_revoke_and_revoke_all_destroy_objects(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    svc = token_service
    _, ring = svc.ring(tenant)
    assert ring.current is not None
    old_current = ring.current
    svc.rotate_and_revoke(tenant, reason="drill", actor="test")
    assert _states(svc, tenant)[old_current.kid] == "revoked"
    assert old_current.token_object_id not in _objects(softhsm, tenant)

    _, ring = svc.ring(tenant)
    published = {k.kid: k.token_object_id for k in ring.published}
    out = svc.revoke_all(tenant, reason="token compromised", actor="test")
    _, ring = svc.ring(tenant)
    assert all(_states(svc, tenant)[kid] == "revoked" for kid in published)
    live = _objects(softhsm, tenant)
    assert not live & set(published.values())
    assert ring.current is not None and ring.next is not None
    assert live == {ring.current.token_object_id, ring.next.token_object_id}
    token, _ = svc.sign(tenant, {"sub": "carol"})
    assert _verify(svc, tenant, token)["sub"] == "carol"
    destroyed = {r.kid for r in svc.store.audit_records(tenant=tenant, event_name="key.destroyed")}
    assert destroyed == {old_current.kid, *published}
    assert out.tenant.name == tenant


def test_import_into_token_tenant_is_refused(token_service: KeyService, tenant: str) -> None:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    pem = generate_private_key(Alg.ES256).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    before = _states(token_service, tenant)
    with pytest.raises(E.KeyBackendUnsupportedError, match="cannot be imported"):
        token_service.import_key(tenant, pem, actor="test")
    assert _states(token_service, tenant) == before


def test_token_absent_changes_no_key_state(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    svc = token_service
    svc.rotate(tenant, actor="test")  # so there is a previous key to revoke without a new one
    t0, ring0 = svc.ring(tenant)
    prev = next(k for k in ring0.keys if k.state == KeyState.PREVIOUS)
    away = softhsm.tokens.with_name("tokens-away")
    os.rename(softhsm.tokens, away)
    try:
        softhsm.reinitialize(may_fail=True)
        for op in (
            lambda: svc.rotate(tenant, actor="test"),
            lambda: svc.revoke(tenant, prev.kid, reason="x", actor="test"),
            lambda: svc.revoke_all(tenant, reason="x", actor="test"),
            lambda: svc.sign(tenant, {"sub": "a"}),
            svc.check_key_backends,
        ):
            with pytest.raises(E.TokenUnavailableError) as info:
                op()
            assert info.value.code == "token_unavailable"
        t1, ring1 = svc.ring(tenant)
        assert t1.key_version == t0.key_version
        assert ring1.keys == ring0.keys
    finally:
        os.rename(away, softhsm.tokens)
        softhsm.reinitialize()
    svc.check_key_backends()
    svc.revoke(tenant, prev.kid, reason="x", actor="test")  # works once the token is back
    assert prev.token_object_id not in _objects(softhsm, tenant)


def test_verify_keeps_working_while_the_token_is_away(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    token, _ = token_service.sign(tenant, {"sub": "a", "aud": "api"})
    token_service.invalidate(tenant)
    away = softhsm.tokens.with_name("tokens-away")
    os.rename(softhsm.tokens, away)
    try:
        softhsm.reinitialize(may_fail=True)
        claims, _kid = token_service.verify(tenant, token, audience="api")
        assert claims["sub"] == "a"
    finally:
        os.rename(away, softhsm.tokens)
        softhsm.reinitialize()


def test_missing_object_is_reported_and_never_promoted(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    import pkcs11

    svc = token_service
    _, ring = svc.ring(tenant)
    assert ring.current is not None and ring.next is not None
    nxt, cur = ring.next, ring.current

    def delete(oid: str | None) -> None:
        assert oid is not None
        with softhsm.session() as s:
            for obj in s.get_objects({pkcs11.Attribute.ID: bytes.fromhex(oid)}):
                obj.destroy()

    delete(nxt.token_object_id)
    before = svc.ring(tenant)
    with pytest.raises(E.KeyObjectMissingError) as info:
        svc.rotate(tenant, actor="test")
    assert info.value.code == "key_object_missing"
    assert svc.ring(tenant) == before
    svc.check_key_backends()  # the current key is fine: still ready
    # Revoking the dangling next is possible (destroying is idempotent).
    svc.revoke(tenant, nxt.kid, reason="object lost", actor="test")
    assert _states(svc, tenant)[nxt.kid] == "revoked"

    delete(cur.token_object_id)
    with pytest.raises(E.KeyObjectMissingError):
        svc.check_key_backends()
    svc.invalidate(tenant)
    with pytest.raises(E.KeyObjectMissingError):
        svc.sign(tenant, {"sub": "a"})


def test_failed_operation_leaves_no_orphan_object(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    before = _objects(softhsm, tenant)
    with pytest.raises(E.ConcurrentChangeError):
        token_service.rotate(tenant, actor="test", if_current="not-the-current-kid")
    assert _objects(softhsm, tenant) == before


def test_wrong_pin_fails_clearly_and_changes_nothing(
    token_service: KeyService, softhsm: SoftHsm, p11_env: dict[str, str], store, sealer, clock
) -> None:  # type: ignore[no-untyped-def]
    from keyturn.keys.backends import KeyBackends
    from keyturn.keys.backends.pkcs11 import PIN_ENV, Pkcs11Config

    env = {**p11_env, PIN_ENV: "wrong"}
    bad = KeyService(
        store, sealer, clock, backends=KeyBackends(sealer, Pkcs11Config((softhsm.module,), env))
    )
    with pytest.raises(E.TokenLoginError) as info:
        bad.create_tenant(
            "hsm-bad-pin",
            issuer=ISSUER,
            policy=POLICY,
            actor="test",
            key_backend=BackendSpec("pkcs11", softhsm.uri),  # type: ignore[arg-type]
        )
    assert info.value.code == "token_login_failed"
    with pytest.raises(E.TenantNotFoundError):
        bad.tenant("hsm-bad-pin")
    bad.backends.close()


def test_unsupported_module_refused_before_anything_is_stored(
    token_service: KeyService, softhsm: SoftHsm
) -> None:
    with pytest.raises(E.ConfigError, match="not allowed"):
        token_service.create_tenant(
            "hsm-evil",
            issuer=ISSUER,
            policy=POLICY,
            actor="test",
            key_backend=BackendSpec("pkcs11", softhsm.uri + "?module-path=/tmp/evil.so"),  # type: ignore[arg-type]
        )
    with pytest.raises(E.TenantNotFoundError):
        token_service.tenant("hsm-evil")


def test_session_lost_mid_run_is_recovered_without_a_state_change(
    token_service: KeyService, tenant: str, softhsm: SoftHsm
) -> None:
    svc = token_service
    first, _ = svc.sign(tenant, {"sub": "a"})
    before = svc.ring(tenant)
    softhsm.reinitialize()  # a token reset: every session handle of the process is invalid
    svc.check_key_backends()  # readiness reopens the session
    second, _ = svc.sign(tenant, {"sub": "b"})
    softhsm.reinitialize()
    third, _ = svc.sign(tenant, {"sub": "c"})  # the sign path reopens it too
    assert {jwt.get_unverified_header(t)["kid"] for t in (first, second, third)} == {
        before[1].current.kid if before[1].current else ""
    }
    assert [_verify(svc, tenant, t)["sub"] for t in (first, second, third)] == ["a", "b", "c"]
    assert svc.ring(tenant) == before


def test_a_token_tenant_is_not_exported_by_a_ring_backup(
    token_service: KeyService, tenant: str
) -> None:
    # A ring export restores sealed software keys; a token's keys never leave it, so an export
    # of a token tenant would restore kids with no keys behind them: refused, clearly.
    from keyturn.backup import export_ring

    with pytest.raises(E.KeyBackendUnsupportedError, match="not exported"):
        export_ring(token_service, tenant)
