"""Hypothesis stateful test: any sequence of operations keeps the ring's invariants.

Invariants checked after every step: exactly one current key, at most one next, the JWKS is
exactly next + current + unretired previous keys, and every token signed by a key that was not
revoked verifies until it expires (the retention rule at work).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.keys.sealing import MasterKey, Sealer
from keyturn.ring.model import KeyState, Policy
from keyturn.service import KeyService
from keyturn.store.sql import SqlStore

POLICY = Policy(
    alg=Alg.EdDSA, rotation_period=86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
)
SEALER = Sealer([MasterKey.generate()])
_TEMPLATE: dict[str, Path] = {}


def template_db() -> Path:
    """Migrate once; every example starts from a copy (migrations are the slow part)."""
    if "path" not in _TEMPLATE:
        d = Path(tempfile.mkdtemp(prefix="keyturn-template-"))
        store = SqlStore(f"sqlite:///{d / 'template.db'}")
        store.migrate()
        store.dispose()
        _TEMPLATE["path"] = d / "template.db"
    return _TEMPLATE["path"]


class RingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="keyturn-stateful-"))
        shutil.copy(template_db(), self.dir / "k.db")
        self.store = SqlStore(f"sqlite:///{self.dir / 'k.db'}")
        self.clock = FakeClock()
        self.svc = KeyService(self.store, SEALER, self.clock)
        self.svc.create_tenant("t", issuer="https://i.example", policy=POLICY, actor="hyp")
        self.tokens: list[tuple[str, str, float]] = []  # token, kid, exp
        self.revoked: set[str] = set()

    def teardown(self) -> None:
        self.store.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    def published(self) -> list[str]:
        _, ring = self.svc.ring("t")
        return [k.kid for k in ring.published]

    @rule()
    def rotate(self) -> None:
        self.svc.rotate("t", actor="hyp")

    @rule()
    def rotate_and_revoke(self) -> None:
        _, ring = self.svc.ring("t")
        assert ring.current
        self.revoked.add(ring.current.kid)
        self.svc.rotate_and_revoke("t", reason="leak", actor="hyp")

    @rule(data=st.data())
    def revoke_one(self, data: st.DataObject) -> None:
        kid = data.draw(st.sampled_from(self.published()))
        self.revoked.add(kid)
        self.svc.revoke("t", kid, reason="test", actor="hyp")

    @precondition(lambda self: len(self.revoked) < 30)
    @rule()
    def revoke_all(self) -> None:
        self.revoked.update(self.published())
        self.svc.revoke_all("t", reason="store leak", actor="hyp")

    # Durations around T, C, S and R matter most; uniform draws would rarely land there.
    @rule(
        seconds=st.one_of(
            st.sampled_from([1, 60, 600, 660, 1800, 3599, 3600, 3660, 7200, 7260, 86400]),
            st.integers(min_value=0, max_value=3 * 86400),
        )
    )
    def advance_and_sweep(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.svc.sweep(actor="scheduler")

    @rule(
        ttl=st.one_of(
            st.sampled_from([1, 1800, 3599, 3600]),
            st.integers(min_value=1, max_value=int(POLICY.token_ttl)),
        )
    )
    def sign(self, ttl: int) -> None:
        token, claims = self.svc.sign("t", {"sub": "u"}, ttl=ttl)
        _, ring = self.svc.ring("t")
        assert ring.current
        self.tokens.append((token, ring.current.kid, claims["exp"]))

    @invariant()
    def ring_is_consistent(self) -> None:
        _, ring = self.svc.ring("t")
        ring.check_invariants()
        assert len(ring.by_state(KeyState.NEXT)) <= 1
        expected = {
            k.kid
            for k in ring.keys
            if k.state in (KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS)
        }
        assert {k["kid"] for k in self.svc.jwks("t")["keys"]} == expected
        assert not expected & self.revoked

    @invariant()
    def live_tokens_of_unrevoked_keys_verify(self) -> None:
        now = self.clock.now()
        for token, kid, exp in self.tokens:
            if now >= exp + POLICY.clock_skew:
                continue
            if kid in self.revoked:
                with pytest.raises(E.RevokedKidError):
                    self.svc.verify("t", token)
            else:
                claims, used = self.svc.verify("t", token)
                assert used == kid
        # Forget expired tokens so the check stays cheap.
        self.tokens = [t for t in self.tokens if now < t[2] + POLICY.clock_skew]


TestRing = RingMachine.TestCase
TestRing.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
