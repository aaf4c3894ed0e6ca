"""Key states, key records and the tenant policy: plain values, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import DEFAULT_RSA_BITS, Alg
from keyturn.keys.backends.base import KeyRef

# \Z, not $: "$" also matches before a trailing newline, so "a\n" would pass.
TENANT_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class KeyState(StrEnum):
    """Lifecycle of a signing key (Auth0's names: Next in Queue, Currently Used, Previously Used)."""

    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"
    REVOKED = "revoked"


PUBLISHED_STATES = frozenset({KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS})


def check_tenant_name(name: str) -> str:
    if not TENANT_NAME_RE.match(name):
        raise InvalidInputError(
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Policy:
    """A tenant's rotation policy; all durations in seconds.

    ``token_ttl`` is T (longest token lifetime), ``jwks_max_age`` is C (the JWKS
    ``Cache-Control: max-age``), ``clock_skew`` is S, ``rotation_period`` is R.
    ``auto_rotate`` off: the scheduler never rotates (operators do, with the same safety rules);
    it still retires previous keys when their retention ends.
    """

    alg: Alg = Alg.RS256
    rotation_period: float = 30 * 86400
    token_ttl: float = 3600
    jwks_max_age: float = 600
    clock_skew: float = 60
    rsa_bits: int = DEFAULT_RSA_BITS
    auto_rotate: bool = True

    def __post_init__(self) -> None:
        # Accept "ES256" as well as Alg.ES256, and refuse anything else here, not later.
        if not isinstance(self.alg, Alg):
            from keyturn.keys.algorithms import parse_alg

            object.__setattr__(self, "alg", parse_alg(str(self.alg)))

    @property
    def prepublication(self) -> float:
        """How long a key must be published before it signs: C + S."""
        return self.jwks_max_age + self.clock_skew

    @property
    def retention(self) -> float:
        """How long a key stays published after it stops signing: max(2T, T + C + S)."""
        return max(2 * self.token_ttl, self.token_ttl + self.jwks_max_age + self.clock_skew)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alg": self.alg.value,
            "rotation_period": self.rotation_period,
            "token_ttl": self.token_ttl,
            "jwks_max_age": self.jwks_max_age,
            "clock_skew": self.clock_skew,
            "rsa_bits": self.rsa_bits,
            "auto_rotate": self.auto_rotate,
        }


@dataclass(frozen=True)
class KeyRecord:
    """One key of a ring: public data, sealed private material, and every transition time."""

    kid: str
    alg: Alg
    state: KeyState
    public_jwk: dict[str, Any]
    created_at: float
    sealed_private: bytes | None = field(default=None, repr=False)
    master_key_id: str | None = None
    activated_at: float | None = None
    deactivated_at: float | None = None
    retire_after: float | None = None
    retired_at: float | None = None
    revoked_at: float | None = None
    revocation_reason: str | None = None
    origin: str = "generated"
    # A key in a token (PKCS#11): its CKA_ID (hex) and CKA_LABEL; never key material. Kept
    # after retire/revoke, when the object itself has been destroyed, for the audit trail.
    token_object_id: str | None = None
    token_label: str | None = None

    @property
    def published(self) -> bool:
        return self.state in PUBLISHED_STATES

    @property
    def has_private(self) -> bool:
        """True while the key can sign somewhere: a sealed blob, or a live token object."""
        if self.state in (KeyState.RETIRED, KeyState.REVOKED):
            return self.sealed_private is not None
        return self.sealed_private is not None or self.token_object_id is not None

    @property
    def ref(self) -> KeyRef:
        """What a key backend needs to find this key's private half."""
        return KeyRef(
            sealed_private=self.sealed_private,
            master_key_id=self.master_key_id,
            token_object_id=self.token_object_id,
            token_label=self.token_label,
        )

    def evolve(self, **changes: Any) -> KeyRecord:
        return replace(self, **changes)

    def public_view(self) -> dict[str, Any]:
        """Everything about the key that may be shown: never the sealed private material."""
        view = {
            "kid": self.kid,
            "alg": self.alg.value,
            "state": self.state.value,
            "origin": self.origin,
            "created_at": self.created_at,
            "activated_at": self.activated_at,
            "deactivated_at": self.deactivated_at,
            "retire_after": self.retire_after,
            "retired_at": self.retired_at,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
            "has_private_key": self.has_private,
            "public_jwk": self.public_jwk,
        }
        if self.token_object_id is not None:
            view["token"] = {"object_id": self.token_object_id, "label": self.token_label}
        return view
