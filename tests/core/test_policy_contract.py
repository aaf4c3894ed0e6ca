"""Every copy of the policy contract is pinned to the one definition, ``Policy``'s fields.

A new policy field that is missing from the schema, the store's rows, the API models, the CLI
flags, discovery or diagnose fails here, not in production.
"""

from __future__ import annotations

import dataclasses
import typing

from keyturn.cli import build_parser
from keyturn.cli.tenant import POLICY_FLAGS
from keyturn.keys.algorithms import ALLOWED_RSA_BITS, Alg
from keyturn.ring.model import Policy
from keyturn.ring.policy_contract import (
    DURATION_FIELDS,
    MAX_DURATION,
    MIN_DURATION,
    MIN_SKEW,
    POLICY_FIELDS,
    PolicyChange,
)
from keyturn.service import KeyService

FIELDS = (
    "alg",
    "rotation_period",
    "token_ttl",
    "jwks_max_age",
    "clock_skew",
    "rsa_bits",
    "auto_rotate",
)


def test_the_definition() -> None:
    assert POLICY_FIELDS == FIELDS
    assert DURATION_FIELDS == ("rotation_period", "token_ttl", "jwks_max_age", "clock_skew")
    assert (MIN_DURATION, MIN_SKEW, MAX_DURATION) == (1.0, 0.0, 315_360_000.0)
    assert tuple(f.name for f in dataclasses.fields(PolicyChange)) == POLICY_FIELDS
    assert tuple(Policy().to_dict()) == POLICY_FIELDS


def test_schema_columns() -> None:
    from keyturn.store import schema

    assert set(POLICY_FIELDS) <= set(schema.tenants.c.keys())


def test_store_round_trip(service: KeyService) -> None:
    """create_tenant, update_policy and the row reader carry every field."""
    policy = Policy(
        alg=Alg.RS384,
        rotation_period=7 * 86400,
        token_ttl=1800,
        jwks_max_age=300,
        clock_skew=30,
        rsa_bits=3072,
        auto_rotate=False,
    )
    service.create_tenant("acme", issuer="https://acme.test", policy=policy, actor="t")
    assert service.tenant("acme").policy == policy
    changed = PolicyChange(
        alg=Alg.PS256,
        rotation_period=14 * 86400,
        token_ttl=900,
        jwks_max_age=120,
        clock_skew=10,
        rsa_bits=4096,
        auto_rotate=True,
    )
    service.change_policy("acme", changed, actor="t")
    assert service.tenant("acme").policy == changed.applied_to(Policy())


def test_api_models() -> None:
    from keyturn.server.models import AlgName, PolicyIn, PolicyOut

    assert tuple(PolicyIn.model_fields) == POLICY_FIELDS
    assert set(POLICY_FIELDS) <= set(PolicyOut.model_fields)
    assert set(typing.get_args(AlgName)) == {a.value for a in Alg}
    rsa = PolicyIn.model_fields["rsa_bits"].annotation
    assert set(typing.get_args(typing.get_args(rsa)[0])) == set(ALLOWED_RSA_BITS)


def test_cli_flags() -> None:
    assert tuple(POLICY_FLAGS) == POLICY_FIELDS
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    tenant = sub.choices["tenant"]  # type: ignore[index]
    tsub = next(a for a in tenant._actions if a.dest == "tenant_cmd")
    for action in ("create", "set-policy"):
        p = tsub.choices[action]  # type: ignore[index]
        flags = {o: a.dest for a in p._actions for o in a.option_strings}
        assert {flags[f] for f in POLICY_FLAGS.values()} == set(POLICY_FIELDS)


def test_discovery_and_diagnose_read_the_durations() -> None:
    from keyturn.diagnose.evidence import POLICY_FIELDS as DIAGNOSE_FIELDS

    assert tuple(DIAGNOSE_FIELDS) == DURATION_FIELDS
