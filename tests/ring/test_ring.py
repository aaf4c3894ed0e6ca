"""The pure Ring: transitions, warnings and the timing helpers, with literal values, no store.

Policy here: R = 1 day, T = 1 h, C = 600 s, S = 60 s, so pre-publication C + S = 660 s and
retention max(2T, T + C + S) = 7200 s.
"""

from __future__ import annotations

import pytest

from keyturn.errors import InvalidTransitionError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.policy_contract import (
    POLICY_FIELDS,
    PolicyChange,
    next_rotation_at,
    prepublication_margin,
)
from keyturn.ring.ring import Ring

POLICY = Policy(
    alg=Alg.EdDSA, rotation_period=86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
)
T0 = 1_000_000.0


def key(kid: str, *, state: KeyState = KeyState.NEXT, origin: str = "generated") -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg=Alg.EdDSA,
        state=state,
        public_jwk={},
        created_at=0.0,
        sealed_private=b"sealed",
        master_key_id="m1",
        origin=origin,
    )


def fresh_ring() -> Ring:
    ring = Ring("acme", POLICY, [])
    ring.bootstrap(T0, key("k1"), key("k2"))
    return ring


def states(ring: Ring) -> dict[str, str]:
    return {k.kid: k.state.value for k in ring.keys}


def test_bootstrap_makes_current_and_next() -> None:
    ring = fresh_ring()
    assert states(ring) == {"k1": "current", "k2": "next"}
    assert ring.current is not None and ring.current.activated_at == 1_000_000.0
    assert {k.kid for k in ring.published} == {"k1", "k2"}
    with pytest.raises(InvalidTransitionError):
        ring.bootstrap(T0, key("k3"), key("k4"))


def test_rotate_after_prepublication_moves_every_state_without_warning() -> None:
    ring = fresh_ring()
    change = ring.rotate(T0 + 660, key("k3"))
    assert states(ring) == {"k1": "previous", "k2": "current", "k3": "next"}
    assert change.warnings == []
    prev = ring.get("k1")
    assert prev.deactivated_at == 1_000_660.0
    assert prev.retire_after == 1_000_660.0 + 7200
    assert [e.event for e in change.events] == ["key.rotated"]
    assert change.events[0].details == {
        "previous": "k1",
        "next": "k3",
        "retire_after": 1_007_860.0,
    }


def test_early_rotation_warns_with_the_gap() -> None:
    ring = fresh_ring()
    change = ring.rotate(T0 + 600, key("k3"))
    assert len(change.warnings) == 1
    assert "published for only 10m" in change.warnings[0]
    assert "up to 1m" in change.warnings[0]  # 660 - 600 = 60 s


def test_rotation_due_exactly_at_activated_plus_r() -> None:
    ring = fresh_ring()
    assert not ring.rotation_due(T0 + 86399)
    assert ring.rotation_due(T0 + 86400)


def test_sweep_retires_then_rotates_when_due() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))  # k1 previous until T0 + 660 + 7200
    assert ring.sweep(T0 + 7859, None).empty
    change = ring.sweep(T0 + 7860, None)
    assert [(e.event, e.kid) for e in change.events] == [("key.retired", "k1")]
    assert ring.get("k1").sealed_private is None
    # k2 activated at T0 + 660: due at T0 + 660 + 86400.
    assert ring.sweep(T0 + 87059, key("k4")).empty
    change = ring.sweep(T0 + 87060, key("k4"))
    assert [(e.event, e.kid) for e in change.events] == [("key.rotated", "k3")]
    assert states(ring) == {"k1": "retired", "k2": "previous", "k3": "current", "k4": "next"}


def test_sweep_ignores_a_key_made_for_another_algorithm() -> None:
    ring = fresh_ring()
    other = KeyRecord(kid="rsa", alg=Alg.RS256, state=KeyState.NEXT, public_jwk={}, created_at=0)
    assert ring.sweep(T0 + 86400, other).empty


def test_revoke_current_promotes_next_and_warns() -> None:
    ring = fresh_ring()
    change = ring.revoke("k1", T0 + 1000, "leaked", key("k3"))
    assert states(ring) == {"k1": "revoked", "k2": "current", "k3": "next"}
    assert ring.get("k1").revocation_reason == "leaked"
    assert any("rejected from now on" in w for w in change.warnings)
    with pytest.raises(InvalidTransitionError):
        ring.revoke("k1", T0 + 1001, "again", None)


def test_revoke_next_needs_a_replacement() -> None:
    ring = fresh_ring()
    with pytest.raises(InvalidTransitionError):
        ring.revoke("k2", T0 + 10, "bad", None)
    ring.revoke("k2", T0 + 10, "bad", key("k3"))
    assert states(ring) == {"k1": "current", "k2": "revoked", "k3": "next"}


def test_revoke_all_replaces_every_published_key() -> None:
    ring = fresh_ring()
    change = ring.revoke_all(T0 + 5, "store leaked", key("n1"), key("n2"))
    assert states(ring) == {"k1": "revoked", "k2": "revoked", "n1": "current", "n2": "next"}
    assert "11m" in change.warnings[0]  # C + S = 660 s


def test_extend_retention_never_shortens() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))
    longer = Ring("acme", PolicyChange(token_ttl=7200).applied_to(POLICY), ring.keys)
    change = longer.extend_retention(T0 + 700)
    # max(2 * 7200, 7200 + 660) = 14400 after deactivation at T0 + 660.
    assert longer.get("k1").retire_after == 1_000_660.0 + 14400
    assert [e.event for e in change.events] == ["key.retention_extended"]
    shorter = Ring("acme", PolicyChange(token_ttl=600).applied_to(POLICY), longer.keys)
    assert shorter.extend_retention(T0 + 800).empty


def test_timing_helpers() -> None:
    assert next_rotation_at(1000.0, 86400.0) == 87400.0
    assert prepublication_margin(1000.0, 1660.0, 660.0) == 0.0
    assert prepublication_margin(1000.0, 1600.0, 660.0) == -60.0


def test_policy_change() -> None:
    assert PolicyChange().empty
    change = PolicyChange.from_mapping({"jwks_max_age": 300.0, "clock_skew": None})
    assert change.fields() == {"jwks_max_age": 300.0}
    assert change.applied_to(POLICY).jwks_max_age == 300.0
    assert change.applied_to(POLICY).rotation_period == 86400
    assert POLICY_FIELDS == (
        "alg",
        "rotation_period",
        "token_ttl",
        "jwks_max_age",
        "clock_skew",
        "rsa_bits",
        "auto_rotate",
    )
    from keyturn.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown policy fields: colour"):
        PolicyChange.from_mapping({"colour": 1})


def test_rotation_is_never_due_with_automatic_rotation_off() -> None:
    manual = Policy(
        alg=Alg.EdDSA,
        rotation_period=86400,
        token_ttl=3600,
        jwks_max_age=600,
        clock_skew=60,
        auto_rotate=False,
    )
    ring = Ring("acme", manual, [])
    ring.bootstrap(T0, key("k1"), key("k2"))
    assert not ring.rotation_due(T0 + 86400)
    assert not ring.rotation_due(T0 + 365 * 86400)
    assert ring.sweep(T0 + 365 * 86400, key("k3")).empty
    assert states(ring) == {"k1": "current", "k2": "next"}


def test_a_sweep_that_rotates_carries_the_rotations_warnings() -> None:
    # R = 300 s < C + S = 660 s (validate_policy refuses it; the Ring itself only warns).
    short = Policy(
        alg=Alg.EdDSA, rotation_period=300, token_ttl=3600, jwks_max_age=600, clock_skew=60
    )
    ring = Ring("acme", short, [])
    ring.bootstrap(T0, key("k1"), key("k2"))
    change = ring.sweep(T0 + 300, key("k3"))
    assert [(e.event, e.kid) for e in change.events] == [("key.rotated", "k2")]
    assert len(change.warnings) == 1
    assert "published for only 5m" in change.warnings[0]
