"""The pure rotation rules: rotate, grace, reuse, lifetimes (no database, time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.errors import InvalidInputError
from keyturn.sessions.model import (
    RefreshTokenRecord,
    Session,
    SessionPolicy,
    parse_scope,
)
from keyturn.sessions.rotation import Verdict, first_token, judge, successor

T0 = 1_800_000_000.0
POLICY = SessionPolicy(access_ttl=300, idle_ttl=3600, absolute_ttl=86400, reuse_grace=5)


def _session(**kw: object) -> Session:
    base: dict[str, object] = {
        "session_id": "s" * 32,
        "tenant": "default",
        "client_id": "ktc_a",
        "subject": "alice",
        "claims": {},
        "created_at": T0,
        "absolute_expires_at": T0 + 86400,
        "last_used_at": None,
        "generation": 1,
    }
    base.update(kw)
    return Session(**base)  # type: ignore[arg-type]


def _token(**kw: object) -> RefreshTokenRecord:
    base: dict[str, object] = {
        "token_hash": "h" * 64,
        "generation": 1,
        "issued_at": T0,
        "idle_expires_at": T0 + 3600,
    }
    base.update(kw)
    return RefreshTokenRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("session", "token", "client", "now", "successor_used", "verdict"),
    [
        pytest.param({}, {}, "ktc_a", T0 + 10, False, Verdict.ROTATE, id="fresh"),
        pytest.param({}, {}, "ktc_b", T0 + 10, False, Verdict.WRONG_CLIENT, id="other-client"),
        pytest.param(
            {"revoked_at": T0}, {}, "ktc_a", T0 + 10, False, Verdict.REVOKED, id="revoked"
        ),
        pytest.param({}, {}, "ktc_a", T0 + 3600, False, Verdict.EXPIRED_IDLE, id="idle-edge"),
        pytest.param(
            {},
            {"idle_expires_at": T0 + 90000},
            "ktc_a",
            T0 + 86400,
            False,
            Verdict.EXPIRED_ABSOLUTE,
            id="absolute-edge",
        ),
        pytest.param(
            {}, {"used_at": T0 + 10}, "ktc_a", T0 + 14.9, False, Verdict.GRACE, id="retry-in-grace"
        ),
        pytest.param(
            {}, {"used_at": T0 + 10}, "ktc_a", T0 + 15, False, Verdict.REUSE, id="grace-edge"
        ),
        pytest.param(
            {},
            {"used_at": T0 + 10},
            "ktc_a",
            T0 + 11,
            True,
            Verdict.REUSE,
            id="successor-already-used",
        ),
        pytest.param(
            {},
            {"used_at": T0 + 10, "idle_expires_at": T0 + 11},
            "ktc_a",
            T0 + 12,
            False,
            Verdict.GRACE,
            id="grace-outlives-idle",
        ),
    ],
)
def test_judge(
    session: dict[str, object],
    token: dict[str, object],
    client: str,
    now: float,
    successor_used: bool,
    verdict: Verdict,
) -> None:
    got = judge(
        _session(**session),
        _token(**token),
        client_id=client,
        now=now,
        policy=POLICY,
        successor_used=successor_used,
    )
    assert got == verdict


def test_zero_grace_makes_every_second_use_a_reuse() -> None:
    policy = SessionPolicy(reuse_grace=0)
    got = judge(
        _session(),
        _token(used_at=T0 + 10),
        client_id="ktc_a",
        now=T0 + 10.001,
        policy=policy,
        successor_used=False,
    )
    assert got == Verdict.REUSE


def test_successor_never_outlives_the_session() -> None:
    sess = _session(absolute_expires_at=T0 + 100, generation=7)
    issue = successor(sess, "n" * 64, T0 + 50, POLICY)
    assert issue.generation == 8
    assert issue.record.idle_expires_at == T0 + 100
    assert successor(_session(), "n" * 64, T0 + 50, POLICY).record.idle_expires_at == T0 + 3650
    assert first_token("f" * 64, T0, T0 + 60, POLICY).idle_expires_at == T0 + 60


@given(
    grace=st.floats(min_value=0, max_value=60),
    used=st.floats(min_value=0, max_value=1000),
    later=st.floats(min_value=0, max_value=1000),
    succ=st.booleans(),
)
def test_a_used_token_never_rotates_again(
    grace: float, used: float, later: float, succ: bool
) -> None:
    """Whatever the timing, a used token yields GRACE (a sibling) or REUSE, never ROTATE; and
    GRACE only inside the grace with the successor unused."""
    policy = SessionPolicy(reuse_grace=grace)
    v = judge(
        _session(),
        _token(used_at=T0 + used),
        client_id="ktc_a",
        now=T0 + used + later,
        policy=policy,
        successor_used=succ,
    )
    assert v in (Verdict.GRACE, Verdict.REUSE)
    if v == Verdict.GRACE:
        # As the clock sees it (float sums round): at most the grace after the first use.
        assert (T0 + used + later) - (T0 + used) < grace and not succ


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"access_ttl": 0}, id="access-zero"),
        pytest.param({"idle_ttl": -1}, id="idle-negative"),
        pytest.param({"absolute_ttl": float("inf")}, id="absolute-inf"),
        pytest.param({"reuse_grace": 61}, id="grace-too-long"),
        pytest.param({"reuse_grace": -1}, id="grace-negative"),
        pytest.param({"idle_ttl": 10, "absolute_ttl": 5}, id="idle-over-absolute"),
        pytest.param({"access_ttl": True}, id="bool"),
    ],
)
def test_unsafe_session_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        SessionPolicy(**fields)


def test_scope_parsing() -> None:
    assert parse_scope("b a b") == ("a", "b")
    assert parse_scope("") == ()
    for bad in ("a  b", 'a"', "a\\b", " a", "x" * 65):
        with pytest.raises(InvalidInputError):
            parse_scope(bad)


def test_an_unused_token_of_an_older_generation_is_a_reuse() -> None:
    # After a grace retry the family is at generation 3 while generation 2 was never used:
    # presenting 2 means two parties hold the family, not a rotation.
    got = judge(
        _session(generation=3),
        _token(generation=2),
        client_id="ktc_a",
        now=T0 + 10,
        policy=POLICY,
        successor_used=False,
    )
    assert got == Verdict.REUSE
    latest = judge(
        _session(generation=3),
        _token(generation=3),
        client_id="ktc_a",
        now=T0 + 10,
        policy=POLICY,
        successor_used=False,
    )
    assert latest == Verdict.ROTATE
