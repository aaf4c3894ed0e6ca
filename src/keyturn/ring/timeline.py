"""The computable future: every scheduled transition and the JWKS at each moment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyturn.ring.model import KeyRecord, KeyState
from keyturn.ring.policy_contract import next_rotation_at
from keyturn.ring.ring import Ring


@dataclass(frozen=True)
class Step:
    at: float
    event: str  # rotate, retire
    kids: tuple[str, ...]
    jwks: tuple[tuple[str, str], ...]  # (kid, state) after the step
    signing: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "event": self.event,
            "kids": list(self.kids),
            "jwks": [{"kid": k, "state": s} for k, s in self.jwks],
            "signing": self.signing,
        }


def _placeholder(i: int, template: KeyRecord) -> KeyRecord:
    return template.evolve(
        kid=f"(new key {i})",
        state=KeyState.NEXT,
        sealed_private=b"plan",
        master_key_id="plan",
        activated_at=None,
        deactivated_at=None,
        retire_after=None,
        retired_at=None,
        revoked_at=None,
        revocation_reason=None,
        origin="planned",
    )


def plan(ring: Ring, now: float, horizon: float, max_steps: int = 200) -> list[Step]:
    """Simulate the scheduler from ``now`` to ``now + horizon`` with the ring's own transitions."""
    sim = Ring(ring.tenant, ring.policy, list(ring.keys))
    cur = sim.current
    if cur is None:
        return []
    template = cur
    steps: list[Step] = []
    n = 0
    t = now
    end = now + horizon
    while len(steps) < max_steps:
        cur = sim.current
        assert cur is not None and cur.activated_at is not None
        rotate_at = max(now, next_rotation_at(cur.activated_at, sim.policy.rotation_period))
        if not sim.policy.auto_rotate:
            rotate_at = float("inf")  # manual: only retirements are scheduled
        retire_times = [
            k.retire_after for k in sim.by_state(KeyState.PREVIOUS) if k.retire_after is not None
        ]
        retire_at = max(now, min(retire_times)) if retire_times else None
        t = rotate_at if retire_at is None else min(rotate_at, retire_at)
        if t > end or t == float("inf"):
            break
        if retire_at is not None and retire_at <= rotate_at:
            change = sim.retire_due(t)
            event = "retire"
        else:
            n += 1
            change = sim.rotate(t, _placeholder(n, template))
            event = "rotate"
        kids = tuple(r.kid for r in change.updated if event == "retire") or tuple(
            e.kid or "" for e in change.events
        )
        cur = sim.current
        assert cur is not None
        steps.append(
            Step(
                at=t,
                event=event,
                kids=kids,
                jwks=tuple((k.kid, k.state.value) for k in sim.published),
                signing=cur.kid,
            )
        )
    return steps
