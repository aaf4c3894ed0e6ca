"""Form values into domain values: policies from duration fields, reasons, confirmations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from keyturn.durations import parse_duration
from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import ALLOWED_RSA_BITS, Alg, parse_alg
from keyturn.ring.model import Policy
from keyturn.ring.policy import fmt_duration
from keyturn.ring.policy_contract import DURATION_FIELDS as CONTRACT_DURATIONS
from keyturn.ring.policy_contract import PolicyChange

MAX_REASON = 500
# How the form names each duration of the policy contract, with its letter from the rules.
DURATION_LABELS = {
    "token_ttl": "T: longest token lifetime",
    "jwks_max_age": "C: JWKS max-age",
    "clock_skew": "S: clock skew",
    "rotation_period": "R: rotation period",
}
# (field, label) in the form's order (T, C, S, R); every duration of the contract, no other.
DURATION_FIELDS = tuple(
    (name, DURATION_LABELS[name])
    for name in sorted(CONTRACT_DURATIONS, key=list(DURATION_LABELS).index)
)
ALGS = [a.value for a in Alg]
RSA_BITS = list(ALLOWED_RSA_BITS)


@dataclass(frozen=True)
class PolicyForm:
    """What the policy fields say, as typed (kept to refill the form) and as a Policy."""

    values: dict[str, str]
    policy: Policy
    force: bool

    def change_from(self, current: Policy) -> PolicyChange:
        """Only the fields that differ from ``current`` (what saving changes and audits)."""
        new, old = self.policy.to_dict(), current.to_dict()
        return PolicyChange.from_mapping(
            {k: getattr(self.policy, k) for k in new if new[k] != old[k]}
        )


def policy_values(p: Policy) -> dict[str, str]:
    return {
        "alg": p.alg.value,
        "rsa_bits": str(p.rsa_bits),
        "auto_rotate": "on" if p.auto_rotate else "off",
        **{name: fmt_duration(getattr(p, name)) for name, _ in DURATION_FIELDS},
    }


def parse_policy(form: dict[str, str], base: Policy) -> PolicyForm:
    """The policy the form asks for; fields left empty keep ``base``'s value.

    Only parsing is checked here (InvalidInputError naming the field); the timing rules are
    :func:`keyturn.ring.policy.policy_violations`' job, so the page says what the CLI says.
    """
    values = policy_values(base)
    changes: dict[str, Any] = {}
    for name, label in DURATION_FIELDS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        values[name] = raw
        try:
            changes[name] = parse_duration(raw)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label}: {exc.detail}") from None
    alg = form.get("alg", "").strip()
    if alg:
        values["alg"] = alg
        changes["alg"] = parse_alg(alg)
    bits = form.get("rsa_bits", "").strip()
    if bits:
        values["rsa_bits"] = bits
        try:
            changes["rsa_bits"] = int(bits)
        except ValueError:
            raise InvalidInputError(f"RSA key size: not a number: {bits!r}") from None
    auto = form.get("auto_rotate", "").strip()
    if auto:
        if auto not in ("on", "off"):
            raise InvalidInputError(f"automatic rotation: on or off, not {auto!r}")
        values["auto_rotate"] = auto
        changes["auto_rotate"] = auto == "on"
    return PolicyForm(values, replace(base, **changes), form.get("force") == "yes")


def reason(form: dict[str, str], *, required: bool) -> str | None:
    text = form.get("reason", "").strip()
    if len(text) > MAX_REASON:
        raise InvalidInputError(f"reason longer than {MAX_REASON} characters")
    if not text:
        if required:
            raise InvalidInputError("a reason is required")
        return None
    return text
