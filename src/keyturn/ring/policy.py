"""The timing rules of DESIGN.md section 3, checked before a policy is accepted."""

from __future__ import annotations

import math

from keyturn.errors import UnsafePolicyError
from keyturn.keys.algorithms import ALLOWED_RSA_BITS
from keyturn.ring.model import Policy
from keyturn.ring.policy_contract import MAX_DURATION, MIN_DURATION, MIN_SKEW

# A JWKS that grows without bound is a verifier problem (size caps, slow refresh).
MAX_PUBLISHED_KEYS = 12


def fmt_duration(seconds: float) -> str:
    """Human duration: 90 -> '1m30s', 3600 -> '1h', 86400*7 -> '7d'."""
    s = round(seconds)
    if s == 0 and seconds:
        return f"{seconds:.3g}s"
    sign = "-" if s < 0 else ""
    s = abs(s)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return sign + ("".join(parts) or "0s")


def policy_violations(policy: Policy) -> list[str]:
    """Every rule the policy breaks, each naming the rule and the numbers."""
    out: list[str] = []
    r, t, c, s = policy.rotation_period, policy.token_ttl, policy.jwks_max_age, policy.clock_skew
    # Whole seconds at least: HTTP max-age and JWT NumericDates have no finer grain, and
    # sub-second or non-finite values only make arithmetic below overflow.
    for name, value, low in (
        ("token lifetime T", t, MIN_DURATION),
        ("JWKS max-age C", c, MIN_DURATION),
        ("rotation period R", r, MIN_DURATION),
        ("clock skew S", s, MIN_SKEW),
    ):
        if not math.isfinite(value) or value < low or value > MAX_DURATION:
            out.append(f"{name} must be between {low:g}s and {MAX_DURATION:g}s (got {value!r})")
    if out:
        return out
    if r < c + s:
        out.append(
            f"pre-publication: the rotation period R={fmt_duration(r)} is shorter than "
            f"C+S={fmt_duration(c + s)} (JWKS max-age {fmt_duration(c)} + skew {fmt_duration(s)}); "
            "the next key would sign before every verifier cache could hold it"
        )
    # previous keys live `retention` after they stop signing; one is added per period.
    published = 2 + int(policy.retention // r) + 1
    if published > MAX_PUBLISHED_KEYS:
        out.append(
            f"JWKS size: with R={fmt_duration(r)} and retention {fmt_duration(policy.retention)} "
            f"the JWKS would hold up to {published} keys (limit {MAX_PUBLISHED_KEYS}); "
            "lengthen the rotation period or shorten the token lifetime"
        )
    return out


def validate_policy(policy: Policy, *, force: bool = False) -> list[str]:
    """Raise ``UnsafePolicyError`` for an unsafe policy unless ``force``; return the violations.

    Structural problems (non-positive durations, an RSA size keyturn will not generate, a key
    size on a non-RSA algorithm) are refused even with ``force``: they are not trade-offs.
    """
    structural = [v for v in policy_violations(policy) if "must" in v]
    if policy.rsa_bits not in ALLOWED_RSA_BITS:
        structural.append(f"RSA key size must be one of {ALLOWED_RSA_BITS} (got {policy.rsa_bits})")
    if structural:
        raise UnsafePolicyError("invalid policy: " + "; ".join(structural), structural)
    violations = policy_violations(policy)
    if violations and not force:
        raise UnsafePolicyError(
            "unsafe policy refused: "
            + "; ".join(violations)
            + " (use --force to override; audited)",
            violations,
        )
    return violations
