"""The key-ring domain: states, policy and its safety rules, the policy contract, transitions,
timeline, and the records every part reads (``Tenant``, ``AuditRecord``). No I/O."""

from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.policy import policy_violations, validate_policy
from keyturn.ring.policy_contract import PolicyChange, next_rotation_at, prepublication_margin
from keyturn.ring.records import AuditRecord, Tenant
from keyturn.ring.ring import Change, Event, Ring

__all__ = [
    "AuditRecord",
    "Change",
    "Event",
    "KeyRecord",
    "KeyState",
    "Policy",
    "PolicyChange",
    "Ring",
    "Tenant",
    "next_rotation_at",
    "policy_violations",
    "prepublication_margin",
    "validate_policy",
]
