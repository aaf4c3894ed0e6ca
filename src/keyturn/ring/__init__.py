"""The key-ring domain: states, policy and its safety rules, transitions, timeline. No I/O."""

from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.policy import policy_violations, validate_policy
from keyturn.ring.ring import Change, Event, Ring

__all__ = [
    "Change",
    "Event",
    "KeyRecord",
    "KeyState",
    "Policy",
    "Ring",
    "policy_violations",
    "validate_policy",
]
