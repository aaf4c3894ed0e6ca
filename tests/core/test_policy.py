"""Timing rules: property tests over all policies, and the refusal messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn import errors as E
from keyturn.durations import fmt_duration, parse_duration
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.ring.policy import policy_violations, validate_policy
from keyturn.ring.timeline import plan

durations = st.floats(min_value=1, max_value=400 * 86400, allow_nan=False)
skews = st.floats(min_value=0, max_value=3600, allow_nan=False)


@given(r=durations, t=durations, c=durations, s=skews)
def test_accepted_policies_obey_the_rules(r: float, t: float, c: float, s: float) -> None:
    p = Policy(alg=Alg.ES256, rotation_period=r, token_ttl=t, jwks_max_age=c, clock_skew=s)
    try:
        validate_policy(p)
    except E.UnsafePolicyError as exc:
        assert exc.violations
        return
    assert r >= c + s  # pre-publication
    assert p.retention >= 2 * t and p.retention >= t + c + s  # retention


@given(r=durations, t=durations, c=durations, s=skews)
def test_force_overrides_safety_rules_only(r: float, t: float, c: float, s: float) -> None:
    p = Policy(alg=Alg.ES256, rotation_period=r, token_ttl=t, jwks_max_age=c, clock_skew=s)
    assert validate_policy(p, force=True) == policy_violations(p)


@pytest.mark.parametrize(
    ("policy", "needle"),
    [
        pytest.param(
            Policy(rotation_period=600, jwks_max_age=600, clock_skew=60),
            "R=10m is shorter than C+S=11m",
            id="prepublication",
        ),
        pytest.param(
            Policy(rotation_period=3600, token_ttl=86400, jwks_max_age=600),
            "JWKS would hold",
            id="jwks-size",
        ),
    ],
)
def test_refusal_names_rule_and_numbers(policy: Policy, needle: str) -> None:
    with pytest.raises(E.UnsafePolicyError) as info:
        validate_policy(policy)
    assert needle in info.value.detail and "--force" in info.value.detail


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(Policy(token_ttl=0), id="zero-ttl"),
        pytest.param(Policy(jwks_max_age=-1), id="negative-max-age"),
        pytest.param(Policy(rsa_bits=1024), id="rsa-1024"),
        pytest.param(Policy(rotation_period=5e-324), id="denormal-period"),
        pytest.param(Policy(token_ttl=float("inf")), id="infinite-ttl"),
        pytest.param(Policy(jwks_max_age=float("nan")), id="nan-max-age"),
        pytest.param(Policy(rotation_period=0.5), id="sub-second-period"),
    ],
)
def test_structural_problems_refused_even_with_force(policy: Policy) -> None:
    with pytest.raises(E.UnsafePolicyError):
        validate_policy(policy, force=True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("500ms", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "h1", "-5s", "1h 30m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(E.InvalidInputError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_fmt_parse_round_trip(seconds: int) -> None:
    assert parse_duration(fmt_duration(seconds)) == seconds


def test_plan_matches_what_the_service_does(service, clock) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(
        alg=Alg.EdDSA, rotation_period=86400, token_ttl=3600, jwks_max_age=600, clock_skew=60
    )
    service.create_tenant("p", issuer="https://i.example", policy=policy, actor="t")
    service.rotate("p", actor="t")
    _, ring = service.ring("p")
    steps = plan(ring, clock.now(), 3 * 86400)
    assert [s.event for s in steps] == ["retire", "rotate", "retire", "rotate", "retire", "rotate"]
    # Run the real scheduler at each planned moment and compare the JWKS sizes it produces.
    for step in steps:
        clock.set(step.at)
        service.sweep()
        _, ring = service.ring("p")
        assert len(ring.published) == len(step.jwks)
        assert [k.state.value for k in ring.published] == [st_ for _, st_ in step.jwks]


def test_policy_alg_accepts_names_and_refuses_others() -> None:
    assert Policy(alg="ES256").alg is Alg.ES256  # type: ignore[arg-type]
    with pytest.raises(E.UnsupportedAlgorithmError):
        Policy(alg="HS256")  # type: ignore[arg-type]
