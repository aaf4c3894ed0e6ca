"""The policy contract in one place: which fields a policy has, a typed change to them, and the
two timing quantities every face shows ("next rotation at", "pre-publication margin").

Every copy of the field list (schema columns, store rows, API models, CLI flags, discovery,
metrics) is derived from ``Policy``'s fields or pinned to them by
``tests/core/test_policy_contract.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy

#: Range limits of the durations, in seconds: whole seconds at least (HTTP max-age and JWT
#: NumericDates have no finer grain), ten years at most. The skew S may be 0.
MIN_DURATION = 1.0
MIN_SKEW = 0.0
MAX_DURATION = 10 * 365 * 86400.0

#: Every field of a policy, in declaration order.
POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Policy))
#: The fields that are durations in seconds (R, T, C, S).
DURATION_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Policy) if f.type in ("float", float)
)


@dataclass(frozen=True)
class PolicyChange:
    """The policy fields to change; ``None`` leaves a field as it is."""

    alg: Alg | None = None
    rotation_period: float | None = None
    token_ttl: float | None = None
    jwks_max_age: float | None = None
    clock_skew: float | None = None
    rsa_bits: int | None = None
    auto_rotate: bool | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PolicyChange:
        """From ``{field: value}``; an unknown field is an invalid-input error."""
        unknown = set(values) - set(POLICY_FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown policy fields: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    @property
    def empty(self) -> bool:
        return not self.fields()

    def fields(self) -> dict[str, Any]:
        """The fields this change sets."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def applied_to(self, policy: Policy) -> Policy:
        return dataclasses.replace(policy, **self.fields())


def next_rotation_at(activated_at: float, rotation_period: float) -> float:
    """When a key activated at ``activated_at`` is due to be rotated out: activated_at + R."""
    return activated_at + rotation_period


def prepublication_margin(next_created_at: float, at: float, prepublication: float) -> float:
    """How long the next key will have been published at ``at``, minus C + S
    (``prepublication``, ``Policy.prepublication``).

    Negative: rotating at ``at`` would let the next key sign before every verifier cache
    can hold it.
    """
    return (at - next_created_at) - prepublication
