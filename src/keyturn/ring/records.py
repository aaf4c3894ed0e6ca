"""Domain records the store returns and every face reads: a tenant and an audit record.

They live in the domain, not in the store, so a face can type them without importing storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyturn.keys.backends.base import SOFTWARE, BackendSpec
from keyturn.ring.model import Policy


@dataclass(frozen=True)
class Tenant:
    """A tenant row: one issuer with its policy."""

    id: int
    name: str
    issuer: str
    policy: Policy
    policy_forced: bool
    key_version: int
    created_at: float
    updated_at: float
    # Where the tenant's private keys live (sealed software keys, or a PKCS#11 token's URI).
    key_backend: BackendSpec = SOFTWARE

    def public_view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "issuer": self.issuer,
            "policy": self.policy.to_dict(),
            "policy_forced": self.policy_forced,
            "key_version": self.key_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "key_backend": self.key_backend.to_dict(),
        }


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    scope: str
    tenant: str | None
    kid: str | None
    event: str
    reason: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "tenant": self.tenant,
            "kid": self.kid,
            "event": self.event,
            "reason": self.reason,
            "details": self.details,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class AuditAnchor:
    """Where the audit trail stood: how many records, and one hash over the head of every
    scope's chain after them. Saved outside the database, it lets ``audit verify`` notice
    records deleted from the end, which the chain alone cannot show."""

    count: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "head": self.head}


@dataclass(frozen=True)
class RotationRow:
    """One tenant's rotation timing, as the metrics gauges need it (R, C, S and two stamps)."""

    tenant: str
    rotation_period: float
    jwks_max_age: float
    clock_skew: float
    current_activated_at: float | None
    next_created_at: float | None
    auto_rotate: bool = True  # off: no rotation is scheduled (no "until rotation" gauge)
