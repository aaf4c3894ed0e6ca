"""The ring checker itself: hand-built rings that break each invariant, one at a time.

The stateful test (test_ring_stateful.py) only ever feeds ``check_invariants`` healthy rings, so
a checker that never raises would pass it. Every ``raise`` of the check runs here on a ring
built by hand, and a healthy ring of each shape passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.ring import Ring, RingInvariantError

SEALED = b"sealed-private-bytes"


def _key(kid: str, state: KeyState, *, private: bool = True, **kw: float | None) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg=Alg.EdDSA,
        state=state,
        public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": kid},
        created_at=1000.0,
        sealed_private=SEALED if private else None,
        master_key_id="mk1" if private else None,
        **kw,
    )


def _current(kid: str = "cur") -> KeyRecord:
    return _key(kid, KeyState.CURRENT, activated_at=1000.0)


def _next(kid: str = "nxt") -> KeyRecord:
    return _key(kid, KeyState.NEXT)


def _previous(kid: str = "prev", **kw: float | None) -> KeyRecord:
    times: dict[str, float | None] = {
        "activated_at": 500.0,
        "deactivated_at": 1000.0,
        "retire_after": 8200.0,
    }
    times.update(kw)
    return _key(kid, KeyState.PREVIOUS, **times)


def _ring(*keys: KeyRecord) -> Ring:
    return Ring("t", Policy(alg=Alg.EdDSA), list(keys))


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(lambda: [_current()], id="current-only"),
        pytest.param(lambda: [_current(), _next()], id="current+next"),
        pytest.param(lambda: [_current(), _next(), _previous(), _previous("p2")], id="full"),
        pytest.param(
            lambda: [
                _current(),
                _next(),
                _key("ret", KeyState.RETIRED, private=False, retired_at=9000.0),
                _key("rev", KeyState.REVOKED, private=False, revoked_at=9000.0),
            ],
            id="with-retired-and-revoked",
        ),
        # rotate() demotes current to previous with its sealed material: allowed.
        pytest.param(lambda: [_current(), _previous()], id="previous-with-material"),
    ],
)
def test_healthy_rings_pass(keys: Callable[[], list[KeyRecord]]) -> None:
    _ring(*keys()).check_invariants()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param(lambda: [], "t: 0 current keys", id="no-key-at-all"),
        pytest.param(lambda: [_next()], "t: 0 current keys", id="no-current"),
        pytest.param(
            lambda: [_current("c1"), _current("c2")], "t: 2 current keys", id="two-current"
        ),
        pytest.param(
            lambda: [_current("c1"), _current("c2"), _current("c3")],
            "t: 3 current keys",
            id="three-current",
        ),
        pytest.param(
            lambda: [_current(), _next("n1"), _next("n2")],
            "t: more than one next key",
            id="two-next",
        ),
        pytest.param(
            lambda: [_current("same"), _previous("same")], "t: duplicate kid", id="duplicate-kid"
        ),
        pytest.param(
            lambda: [_current(), _key("r", KeyState.RETIRED)],
            "r: retired key still holds private material",
            id="retired-with-material",
        ),
        pytest.param(
            lambda: [_current(), _key("v", KeyState.REVOKED)],
            "v: revoked key still holds private material",
            id="revoked-with-material",
        ),
        pytest.param(
            lambda: [_previous("p", retire_after=None), _current()],
            "p: previous key without retire_after",
            id="previous-without-retire-after",
        ),
        pytest.param(
            lambda: [_current(), _previous("p", deactivated_at=None)],
            "p: previous key without retire_after",
            id="previous-without-deactivated-at",
        ),
        pytest.param(
            lambda: [_key("c", KeyState.CURRENT, private=False, activated_at=1.0)],
            "c: current key without private material",
            id="current-without-material",
        ),
    ],
)
def test_each_broken_invariant_is_caught(keys: Callable[[], list[KeyRecord]], message: str) -> None:
    with pytest.raises(RingInvariantError, match="^" + re.escape(message) + "$"):
        _ring(*keys()).check_invariants()


def test_a_transition_that_would_break_the_ring_is_refused() -> None:
    """``_apply`` runs the check: a change leaving two current keys raises, not persists."""
    from keyturn.ring.ring import Change

    ring = _ring(_current("c1"), _next("n1"))
    with pytest.raises(RingInvariantError, match="2 current keys"):
        ring._apply(Change(created=[_current("c2")]))
