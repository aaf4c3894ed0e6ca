"""The timing rules at their boundaries, with literal seconds (README "Timing rules").

The property tests in test_policy.py restate the rules in the same arithmetic the code uses;
these pin the numbers themselves: R = C + S is allowed and R = C + S - 1 is not, and retention
is max(2T, T + C + S) on both sides of the point where the arms cross.
"""

from __future__ import annotations

import pytest

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyState, Policy
from keyturn.ring.policy import policy_violations, validate_policy
from keyturn.service import KeyService


def _policy(r: float, t: float, c: float, s: float) -> Policy:
    return Policy(alg=Alg.EdDSA, rotation_period=r, token_ttl=t, jwks_max_age=c, clock_skew=s)


@pytest.mark.parametrize(
    ("r", "c", "s"),
    [
        pytest.param(660, 600, 60, id="R=660=C+S"),
        pytest.param(3600, 3600, 0, id="R=3600=C+S-no-skew"),
        pytest.param(86400, 86340, 60, id="R=1d=C+S"),
    ],
)
def test_rotation_period_equal_to_c_plus_s_is_accepted(r: float, c: float, s: float) -> None:
    p = _policy(r, 60, c, s)
    assert policy_violations(p) == []
    assert validate_policy(p) == []


@pytest.mark.parametrize(
    ("r", "c", "s"),
    [
        pytest.param(659, 600, 60, id="R=659=C+S-1"),
        pytest.param(3599, 3600, 0, id="R=3599=C+S-1-no-skew"),
        pytest.param(86399, 86340, 60, id="R=1d-1s=C+S-1"),
    ],
)
def test_rotation_period_one_second_short_of_c_plus_s_is_refused(
    r: float, c: float, s: float
) -> None:
    p = _policy(r, 60, c, s)
    violations = policy_violations(p)
    assert len(violations) == 1
    assert violations[0].startswith("pre-publication")
    with pytest.raises(E.UnsafePolicyError):
        validate_policy(p)
    assert validate_policy(p, force=True) == violations


def test_boundary_through_the_service(service: KeyService) -> None:
    service.create_tenant(
        "edge", issuer="https://i.test", policy=_policy(660, 60, 600, 60), actor="t"
    )
    with pytest.raises(E.UnsafePolicyError):
        service.set_policy("edge", actor="t", rotation_period=659.0)
    service.set_policy("edge", actor="t", rotation_period=660.0)
    assert service.tenant("edge").policy.rotation_period == 660.0


@pytest.mark.parametrize(
    ("t", "c", "s", "retention"),
    [
        # T + C + S > 2T (C + S > T): the T + C + S arm decides.
        pytest.param(600, 3600, 60, 4260, id="T=600,C=3600,S=60:T+C+S=4260>2T=1200"),
        pytest.param(60, 600, 60, 720, id="T=60,C=600,S=60:T+C+S=720>2T=120"),
        # 2T > T + C + S: the 2T arm decides.
        pytest.param(3600, 600, 60, 7200, id="T=3600,C=600,S=60:2T=7200>T+C+S=4260"),
        # equal arms
        pytest.param(660, 600, 60, 1320, id="T=660,C=600,S=60:2T=T+C+S=1320"),
    ],
)
def test_retention_is_the_larger_arm(t: float, c: float, s: float, retention: float) -> None:
    assert _policy(86400, t, c, s).retention == retention


def test_previous_key_stays_published_t_plus_c_plus_s_after_rotation(
    service: KeyService, clock: FakeClock
) -> None:
    """T=600, C=3600, S=60: a demoted key retires 4260 s after rotation, not 2T = 1200 s."""
    service.create_tenant(
        "long-cache", issuer="https://i.test", policy=_policy(86400, 600, 3600, 60), actor="t"
    )
    clock.advance(3660)  # the next key's pre-publication C + S
    old = service.ring("long-cache")[1].current
    assert old is not None
    rotated_at = clock.now()
    service.rotate("long-cache", actor="t")
    demoted = service.ring("long-cache")[1].get(old.kid)
    assert demoted.state == KeyState.PREVIOUS
    assert demoted.retire_after == rotated_at + 4260

    clock.advance(4259)  # 1 s before T + C + S: still published (2T = 1200 s is long past)
    service.retire_due("long-cache", actor="t")
    assert old.kid in {k["kid"] for k in service.jwks("long-cache")["keys"]}
    clock.advance(1)  # exactly T + C + S after rotation: retired
    service.retire_due("long-cache", actor="t")
    assert old.kid not in {k["kid"] for k in service.jwks("long-cache")["keys"]}
    assert service.ring("long-cache")[1].get(old.kid).state == KeyState.RETIRED
