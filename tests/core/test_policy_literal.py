"""Policy refusals word for word, and the policy's stored form (issue #20; written against
the survivors of the 2026-12-02 mutation run, docs/mutation.md)."""

from __future__ import annotations

import math

import pytest

from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy, check_tenant_name
from keyturn.ring.policy import policy_violations

OK = {"rotation_period": 86400, "token_ttl": 3600, "jwks_max_age": 600, "clock_skew": 60}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("token_ttl", 0.5, "token lifetime T must be between 1s and 3.1536e+08s (got 0.5)"),
        ("jwks_max_age", 0, "JWKS max-age C must be between 1s and 3.1536e+08s (got 0)"),
        (
            "rotation_period",
            math.inf,
            "rotation period R must be between 1s and 3.1536e+08s (got inf)",
        ),
        ("clock_skew", -1, "clock skew S must be between 0s and 3.1536e+08s (got -1)"),
        (
            "token_ttl",
            10 * 365 * 86400 + 1,
            "token lifetime T must be between 1s and 3.1536e+08s (got 315360001)",
        ),
    ],
)
def test_each_out_of_range_duration_is_named_with_its_bounds(
    field: str, value: float, message: str
) -> None:
    policy = Policy(alg=Alg.ES256, **{**OK, field: value})
    assert policy_violations(policy) == [message]


def test_the_bounds_themselves_are_in_range() -> None:
    assert policy_violations(Policy(alg=Alg.ES256, **{**OK, "clock_skew": 0})) == []
    at_max = Policy(alg=Alg.ES256, **{**OK, "rotation_period": 10 * 365 * 86400})
    assert policy_violations(at_max) == []


def test_policy_to_dict_names_every_field() -> None:
    policy = Policy(alg=Alg.RS256, **OK, rsa_bits=3072, auto_rotate=False)
    assert policy.to_dict() == {
        "alg": "RS256",
        "rotation_period": 86400,
        "token_ttl": 3600,
        "jwks_max_age": 600,
        "clock_skew": 60,
        "rsa_bits": 3072,
        "auto_rotate": False,
    }


def test_a_bad_tenant_name_is_refused_with_the_rule() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_tenant_name("No_Such")
    assert info.value.detail == (
        "invalid tenant name 'No_Such': use 1-63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )
    assert check_tenant_name("a-1") == "a-1"


def test_jwks_size_limit_at_twelve_keys() -> None:
    # retention max(2T, T + C + S) = 7200 s; keys published = 2 + 7200 // R + 1.
    def p(r: float) -> Policy:
        return Policy(alg=Alg.ES256, **{**OK, "rotation_period": r})

    assert policy_violations(p(800)) == []  # 2 + 9 + 1 = 12
    assert policy_violations(p(721)) == []  # 7200 // 721 = 9: still 12
    assert policy_violations(p(720)) == [  # 2 + 10 + 1 = 13
        "JWKS size: with R=12m and retention 2h the JWKS would hold up to 13 keys (limit 12); "
        "lengthen the rotation period or shorten the token lifetime"
    ]


def test_prepublication_refusal_wording() -> None:
    policy = Policy(alg=Alg.ES256, **{**OK, "rotation_period": 659})
    assert policy_violations(policy)[0] == (
        "pre-publication: the rotation period R=10m59s is shorter than C+S=11m (JWKS max-age "
        "10m + skew 1m); the next key would sign before every verifier cache could hold it"
    )


def test_validate_policy_messages_and_violations() -> None:
    from keyturn.errors import UnsafePolicyError
    from keyturn.ring.policy import validate_policy

    bad = Policy(alg=Alg.ES256, **{**OK, "token_ttl": 0.5, "clock_skew": -1})
    with pytest.raises(UnsafePolicyError) as structural:
        validate_policy(bad, force=True)  # structural: refused even with force
    t_msg = "token lifetime T must be between 1s and 3.1536e+08s (got 0.5)"
    s_msg = "clock skew S must be between 0s and 3.1536e+08s (got -1)"
    assert structural.value.detail == f"invalid policy: {t_msg}; {s_msg}"
    assert structural.value.violations == [t_msg, s_msg]
    unsafe = Policy(alg=Alg.ES256, **{**OK, "rotation_period": 720})
    with pytest.raises(UnsafePolicyError) as refused:
        validate_policy(unsafe)
    (size_msg,) = policy_violations(unsafe)
    assert refused.value.detail == (
        f"unsafe policy refused: {size_msg} (use --force to override; audited)"
    )
    assert refused.value.violations == [size_msg]
    assert validate_policy(unsafe, force=True) == [size_msg]
    assert validate_policy(Policy(alg=Alg.ES256, **OK)) == []


def test_several_unsafe_violations_are_joined_in_the_refusal() -> None:
    from keyturn.errors import UnsafePolicyError
    from keyturn.ring.policy import validate_policy

    # R = 659 s: shorter than C + S = 660 s, and 2 + 7200 // 659 + 1 = 13 keys.
    both = Policy(alg=Alg.ES256, **{**OK, "rotation_period": 659})
    pre, size = policy_violations(both)
    assert pre.startswith("pre-publication: ") and size.startswith("JWKS size: ")
    with pytest.raises(UnsafePolicyError) as info:
        validate_policy(both)
    assert info.value.detail == (
        f"unsafe policy refused: {pre}; {size} (use --force to override; audited)"
    )
