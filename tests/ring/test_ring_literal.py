"""Ring.revoke, revoke_all and place_imported: every branch with its exact records, events and
warnings (issue #20; written against the 2026-12-02 mutation run's survivors).

Policy as in test_ring.py: R = 1 day, T = 1 h, C = 600 s, S = 60 s, so pre-publication 660 s
and retention 7200 s. Keys are made at T0 by bootstrap: k1 current, k2 next.
"""

from __future__ import annotations

import pytest

from keyturn.errors import InvalidTransitionError
from keyturn.ring.model import KeyRecord, KeyState
from keyturn.ring.ring import Ring

from .test_ring import POLICY, T0, fresh_ring, key, states


def rec(ring: Ring, kid: str) -> KeyRecord:
    return ring.get(kid)


def test_revoke_current_records_events_and_warnings() -> None:
    ring = fresh_ring()
    now = T0 + 1000  # k2 published for 1000 s >= 660 s: no pre-publication warning
    change = ring.revoke("k1", now, "leaked", key("k3"))
    k1, k2, k3 = rec(ring, "k1"), rec(ring, "k2"), rec(ring, "k3")
    assert (k1.state, k1.revoked_at, k1.revocation_reason) == (KeyState.REVOKED, now, "leaked")
    assert k1.sealed_private is None and k1.master_key_id is None
    assert (k2.state, k2.activated_at) == (KeyState.CURRENT, now)
    assert (k3.state, k3.created_at) == (KeyState.NEXT, now)
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        (
            "key.revoked",
            "k1",
            {"reason": "leaked", "was": "current", "promoted": "k2", "next": "k3"},
        )
    ]
    assert change.warnings == [
        "tokens signed by k1 in the last 1h are rejected from now on: "
        "their holders must get new tokens"
    ]
    assert {r.kid for r in change.updated} == {"k1", "k2"}
    assert [r.kid for r in change.created] == ["k3"]


def test_rotate_and_revoke_before_prepublication_warns_with_the_gap() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))  # k3 next from T0 + 660
    change = ring.revoke("k2", T0 + 960, "leaked", key("k4"))  # k3 published 300 s < 660 s
    assert states(ring) == {"k1": "previous", "k2": "revoked", "k3": "current", "k4": "next"}
    assert change.warnings[0] == (
        "rotate-and-revoke: key k3 has been published for only 5m, less than the 11m verifier "
        "caches may hold the old JWKS (max-age + skew). Verifiers that do not refresh on an "
        "unknown kid may reject new tokens for up to 6m."
    )
    assert len(change.warnings) == 2


@pytest.mark.parametrize("missing", ["next", "replacement"])
def test_revoke_current_needs_a_next_and_a_replacement(missing: str) -> None:
    ring = fresh_ring()
    if missing == "next":
        ring.keys = [k for k in ring.keys if k.kid != "k2"]
    with pytest.raises(InvalidTransitionError) as info:
        ring.revoke("k1", T0 + 1000, "leaked", None if missing == "replacement" else key("k3"))
    assert info.value.detail == "revoking the current key needs a next key to promote"
    assert rec(ring, "k1").state == KeyState.CURRENT  # nothing changed


def test_revoke_next_records_its_replacement() -> None:
    ring = fresh_ring()
    with pytest.raises(InvalidTransitionError) as info:
        ring.revoke("k2", T0 + 10, "bad", None)
    assert info.value.detail == "revoking the next key needs a replacement"
    change = ring.revoke("k2", T0 + 10, "bad", key("k3"))
    assert (rec(ring, "k3").state, rec(ring, "k3").created_at) == (KeyState.NEXT, T0 + 10)
    assert rec(ring, "k2").revoked_at == T0 + 10
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.revoked", "k2", {"reason": "bad", "was": "next", "next": "k3"})
    ]
    assert change.warnings == []
    assert [r.kid for r in change.updated] == ["k2"] and [r.kid for r in change.created] == ["k3"]


def test_revoke_previous_warns_with_the_time_it_had_left() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))  # k1 previous until T0 + 660 + 7200
    change = ring.revoke("k1", T0 + 660 + 3600, "old leak", None)
    assert rec(ring, "k1").state == KeyState.REVOKED
    assert change.warnings == [
        "key k1 would have stayed published 1h more; "
        "tokens it signed that are still live are rejected from now on"
    ]
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.revoked", "k1", {"reason": "old leak", "was": "previous"})
    ]
    assert [r.kid for r in change.updated] == ["k1"]


def test_revoke_previous_at_or_after_its_retirement_time_does_not_warn() -> None:
    for after in (0.0, 1.0):
        ring = fresh_ring()
        ring.rotate(T0 + 660, key("k3"))
        change = ring.revoke("k1", T0 + 660 + 7200 + after, "late", None)
        assert change.warnings == [] and rec(ring, "k1").state == KeyState.REVOKED
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))
    change = ring.revoke("k1", T0 + 660 + 7199.5, "late", None)
    assert len(change.warnings) == 1  # half a second left still warns


def test_revoked_and_retired_keys_cannot_be_revoked() -> None:
    ring = fresh_ring()
    ring.revoke("k2", T0 + 10, "bad", key("k3"))
    with pytest.raises(InvalidTransitionError) as info:
        ring.revoke("k2", T0 + 11, "again", key("k4"))
    assert info.value.detail == "key k2 is already revoked"
    ring.rotate(T0 + 700, key("k4"))
    ring.retire_due(T0 + 700 + 7200)
    assert rec(ring, "k1").state == KeyState.RETIRED
    with pytest.raises(InvalidTransitionError) as info:
        ring.revoke("k1", T0 + 8000, "x", None)
    assert info.value.detail == "key k1 is retired: it is no longer published"


def test_revoke_all_records_every_key_and_the_fresh_pair() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))  # published: k1 previous, k2 current, k3 next
    now = T0 + 1000
    change = ring.revoke_all(now, "store leaked", key("n1"), key("n2"))
    assert states(ring) == {
        "k1": "revoked",
        "k2": "revoked",
        "k3": "revoked",
        "n1": "current",
        "n2": "next",
    }
    for kid in ("k1", "k2", "k3"):
        r = rec(ring, kid)
        assert (r.revoked_at, r.revocation_reason, r.sealed_private) == (now, "store leaked", None)
    n1, n2 = rec(ring, "n1"), rec(ring, "n2")
    assert (n1.created_at, n1.activated_at) == (now, now)
    assert n2.created_at == now
    assert sorted((e.event, e.kid, tuple(sorted(e.details.items()))) for e in change.events) == [
        ("key.replaced_all", "n1", (("next", "n2"), ("reason", "store leaked"))),
        ("key.revoked", "k1", (("all", True), ("reason", "store leaked"), ("was", "previous"))),
        ("key.revoked", "k2", (("all", True), ("reason", "store leaked"), ("was", "current"))),
        ("key.revoked", "k3", (("all", True), ("reason", "store leaked"), ("was", "next"))),
    ]
    assert change.warnings == [
        "every published key was revoked and n1 signs at once, with no pre-publication: "
        "verifiers that do not refresh on an unknown kid will reject new tokens until their "
        "cached JWKS expires, up to 11m (max-age + skew)"
    ]


def imported(kid: str) -> KeyRecord:
    return key(kid, origin="imported")


def test_import_as_next_refused_without_replace_then_replaces_the_next() -> None:
    ring = fresh_ring()
    with pytest.raises(InvalidTransitionError) as info:
        ring.place_imported(T0 + 5, imported("i1"), KeyState.NEXT, None)
    assert info.value.detail == (
        "tenant acme already has a next key (k2, generated): importing as next retires it and "
        "destroys its private key; pass replace_next (--replace-next) to do that"
    )
    change = ring.place_imported(T0 + 5, imported("i1"), KeyState.NEXT, None, replace_next=True)
    k2, i1 = rec(ring, "k2"), rec(ring, "i1")
    assert (k2.state, k2.retired_at, k2.sealed_private) == (KeyState.RETIRED, T0 + 5, None)
    assert (i1.state, i1.created_at, i1.sealed_private) == (KeyState.NEXT, T0 + 5, b"sealed")
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.retired", "k2", {"replaced_by": "i1"}),
        ("key.imported", "i1", {"as": "next"}),
    ]
    assert change.warnings == [
        "next key k2 was retired and its private key destroyed (replaced by i1)"
    ]


def test_import_as_current_demotes_the_current_and_warns() -> None:
    ring = fresh_ring()
    change = ring.place_imported(T0 + 5, imported("i1"), KeyState.CURRENT, None)
    k1, i1 = rec(ring, "k1"), rec(ring, "i1")
    assert (i1.state, i1.created_at, i1.activated_at) == (KeyState.CURRENT, T0 + 5, T0 + 5)
    assert (k1.state, k1.deactivated_at, k1.retire_after) == (
        KeyState.PREVIOUS,
        T0 + 5,
        T0 + 5 + 7200,
    )
    assert change.warnings == [
        "imported key i1 signs at once, with no pre-publication: verifiers that do not refresh "
        "on an unknown kid may reject new tokens for up to 11m"
    ]


def test_import_as_previous_is_published_for_the_retention_without_its_private_key() -> None:
    ring = fresh_ring()
    ring.place_imported(T0 + 5, imported("i1"), KeyState.PREVIOUS, None)
    i1 = rec(ring, "i1")
    assert (i1.state, i1.created_at, i1.deactivated_at, i1.retire_after) == (
        KeyState.PREVIOUS,
        T0 + 5,
        T0 + 5,
        T0 + 5 + 7200,
    )
    assert i1.sealed_private is None and i1.master_key_id is None
    assert "i1" in {k.kid for k in ring.published}


def test_an_imported_kid_already_in_the_ring_is_refused() -> None:
    ring = fresh_ring()
    with pytest.raises(InvalidTransitionError) as info:
        ring.place_imported(T0 + 5, imported("k1"), KeyState.PREVIOUS, None)
    assert info.value.detail == "key k1 is already in tenant acme"


def test_import_as_retired_or_revoked_is_refused() -> None:
    for state in (KeyState.RETIRED, KeyState.REVOKED):
        ring = fresh_ring()
        with pytest.raises(InvalidTransitionError) as info:
            ring.place_imported(T0 + 5, imported("i1"), state, None)
        assert info.value.detail.startswith("cannot import a key as ")
        assert "i1" not in states(ring)


def test_bootstrap_records_and_events() -> None:
    ring = Ring("acme", POLICY, [])
    change = ring.bootstrap(T0, key("k1"), key("k2"))
    k1, k2 = rec(ring, "k1"), rec(ring, "k2")
    assert (k1.state, k1.created_at, k1.activated_at) == (KeyState.CURRENT, T0, T0)
    assert (k2.state, k2.created_at, k2.activated_at) == (KeyState.NEXT, T0, None)
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.created", "k1", {"state": "current"}),
        ("key.created", "k2", {"state": "next"}),
    ]
    with pytest.raises(InvalidTransitionError) as info:
        ring.bootstrap(T0, key("k3"), key("k4"))
    assert info.value.detail == "tenant acme already has keys"


def test_rotate_records_and_the_early_rotation_wording() -> None:
    ring = fresh_ring()
    change = ring.rotate(T0 + 600, key("k3"))  # k2 published 600 s < 660 s
    k2, k3 = rec(ring, "k2"), rec(ring, "k3")
    assert (k2.state, k2.activated_at) == (KeyState.CURRENT, T0 + 600)
    assert (k3.state, k3.created_at) == (KeyState.NEXT, T0 + 600)
    assert change.warnings == [
        "early rotation: key k2 has been published for only 10m, less than the 11m verifier "
        "caches may hold the old JWKS (max-age + skew). Verifiers that do not refresh on an "
        "unknown kid may reject new tokens for up to 1m."
    ]


def test_rotate_without_a_next_key_promotes_the_new_key_at_once() -> None:
    ring = fresh_ring()
    ring.keys = [k for k in ring.keys if k.kid != "k2"]  # a ring damaged by hand
    change = ring.rotate(T0 + 100, key("k3"))
    k3 = rec(ring, "k3")
    assert (k3.state, k3.created_at, k3.activated_at) == (KeyState.CURRENT, T0 + 100, T0 + 100)
    assert states(ring) == {"k1": "previous", "k3": "current"}
    assert change.warnings == ["no next key existed: the new key signs without pre-publication"]
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.rotated", "k3", {"previous": "k1", "next": "k3", "retire_after": T0 + 100 + 7200})
    ]


def test_retire_due_records_and_events() -> None:
    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))
    change = ring.retire_due(T0 + 660 + 7200)
    k1 = rec(ring, "k1")
    assert (k1.state, k1.retired_at) == (KeyState.RETIRED, T0 + 660 + 7200)
    assert k1.sealed_private is None and k1.master_key_id is None
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.retired", "k1", {"retire_after": T0 + 660 + 7200})
    ]
    assert ring.retire_due(T0 + 10**6).empty


def test_extend_retention_records_the_new_time_only_when_it_is_later() -> None:
    from keyturn.ring.model import Policy

    ring = fresh_ring()
    ring.rotate(T0 + 660, key("k3"))  # k1: retire_after T0 + 660 + 7200
    assert ring.extend_retention(T0 + 700).empty  # same policy: nothing to extend
    ring.policy = Policy(
        alg=POLICY.alg, rotation_period=86400, token_ttl=7200, jwks_max_age=600, clock_skew=60
    )  # retention max(2T, T + C + S) = 14400
    change = ring.extend_retention(T0 + 700)
    assert rec(ring, "k1").retire_after == T0 + 660 + 14400
    assert [(e.event, e.kid, e.details) for e in change.events] == [
        ("key.retention_extended", "k1", {"retire_after": T0 + 660 + 14400})
    ]
    ring.policy = POLICY  # shorter again: never shortened
    assert ring.extend_retention(T0 + 800).empty
    assert rec(ring, "k1").retire_after == T0 + 660 + 14400


def test_get_names_the_missing_key() -> None:
    from keyturn.errors import KeyNotFoundError

    with pytest.raises(KeyNotFoundError) as info:
        fresh_ring().get("nope")
    assert info.value.detail == "tenant acme has no key nope"


def odd(kid: str) -> KeyRecord:
    """A new key as a generator might hand it over, in some other state: the ring sets it."""
    return key(kid, state=KeyState.RETIRED)


def test_every_operation_sets_the_state_of_the_keys_it_places() -> None:
    ring = Ring("acme", POLICY, [])
    ring.bootstrap(T0, odd("k1"), odd("k2"))
    assert states(ring) == {"k1": "current", "k2": "next"}
    ring.rotate(T0 + 660, odd("k3"))
    assert states(ring)["k3"] == "next"
    ring.revoke("k3", T0 + 700, "bad", odd("k4"))  # revoke next
    assert states(ring)["k4"] == "next"
    ring.revoke("k2", T0 + 2000, "leak", odd("k5"))  # rotate-and-revoke
    assert states(ring)["k5"] == "next"
    ring.revoke_all(T0 + 3000, "all", odd("n1"), odd("n2"))
    assert (states(ring)["n1"], states(ring)["n2"]) == ("current", "next")
    ring.place_imported(T0 + 4000, odd("i1"), KeyState.NEXT, None, replace_next=True)
    assert states(ring)["i1"] == "next"
