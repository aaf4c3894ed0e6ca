"""The typed result of a diagnosis: verdict classes with their exit codes, and the evidence."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from keyturn.diagnose._http import Fetch
from keyturn.diagnose.jwks import JwksReport
from keyturn.durations import fmt_duration


class Verdict(StrEnum):
    """What is wrong, one class per distinct fix; each has its own exit code (see EXIT_CODES)."""

    OK = "ok"
    TOKEN_MALFORMED = "token_malformed"  # noqa: S105 (a verdict name, not a secret)
    JWKS_UNREACHABLE = "jwks_unreachable"
    JWKS_INVALID = "jwks_invalid"
    KID_NOT_PUBLISHED = "kid_not_published"
    SIGNATURE_INVALID = "signature_invalid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    CLAIMS_INVALID = "claims_invalid"
    CACHING_UNSAFE = "caching_unsafe"


# Stable exit codes. 1-9 belong to the rest of the CLI (usage errors stay 2), so diagnosis
# starts at 10: a script can tell "the token is bad in this way" from "the command failed".
EXIT_CODES: dict[Verdict, int] = {
    Verdict.OK: 0,
    Verdict.TOKEN_MALFORMED: 10,
    Verdict.JWKS_UNREACHABLE: 11,
    Verdict.JWKS_INVALID: 12,
    Verdict.KID_NOT_PUBLISHED: 13,
    Verdict.SIGNATURE_INVALID: 14,
    Verdict.EXPIRED: 15,
    Verdict.NOT_YET_VALID: 16,
    Verdict.ISSUER_MISMATCH: 17,
    Verdict.AUDIENCE_MISMATCH: 18,
    Verdict.CLAIMS_INVALID: 19,
    Verdict.CACHING_UNSAFE: 20,
}

Severity = Literal["error", "warning", "info"]


def relative(seconds: float) -> str:
    """'in 5m' or '12m ago' for a time ``seconds`` from now."""
    if abs(seconds) < 1:
        return "now"
    return f"in {fmt_duration(seconds)}" if seconds > 0 else f"{fmt_duration(-seconds)} ago"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Finding:
    """A secondary observation; the verdict is the one that explains the failure."""

    severity: Severity
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class TimeClaim:
    name: str
    value: float
    now: float

    @property
    def offset(self) -> float:
        """Seconds from now (negative: in the past)."""
        return self.value - self.now

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "utc": iso(self.value),
            "seconds_from_now": round(self.offset, 1),
            "relative": relative(self.offset),
        }


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: header fields, registered claims, never the signature."""

    header: dict[str, Any]
    claims: dict[str, Any]
    times: tuple[TimeClaim, ...]
    other_claims: tuple[str, ...]
    signature_bytes: int
    fingerprint: str  # first 16 hex of SHA-256 over the token, to correlate with logs
    decode_error: str | None = None

    @property
    def alg(self) -> str | None:
        v = self.header.get("alg")
        return v if isinstance(v, str) else None

    @property
    def kid(self) -> str | None:
        v = self.header.get("kid")
        return v if isinstance(v, str) else None

    @property
    def iss(self) -> str | None:
        v = self.claims.get("iss")
        return v if isinstance(v, str) else None

    def time(self, name: str) -> TimeClaim | None:
        for t in self.times:
            if t.name == name:
                return t
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "claims": self.claims,
            "times": {t.name: t.to_dict() for t in self.times},
            "other_claims": list(self.other_claims),
            "signature_bytes": self.signature_bytes,
            "fingerprint": self.fingerprint,
            "decode_error": self.decode_error,
        }


@dataclass(frozen=True)
class DiscoveryReport:
    """The OpenID discovery document, when an issuer was given."""

    fetch: Fetch
    issuer: str | None = None
    jwks_uri: str | None = None
    algs: tuple[str, ...] = ()
    keyturn_policy: dict[str, float] | None = None
    revocations_uri: str | None = None
    error: str | None = None

    @property
    def is_keyturn(self) -> bool:
        """A keyturn issuer announces its revocation feed (and, optionally, its policy)."""
        return self.revocations_uri is not None or self.keyturn_policy is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.fetch.url,
            "http": self.fetch.to_dict(),
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "id_token_signing_alg_values_supported": list(self.algs),
            "keyturn_policy": self.keyturn_policy,
            "keyturn_revocations_uri": self.revocations_uri,
            "is_keyturn": self.is_keyturn,
            "error": self.error,
        }


@dataclass(frozen=True)
class CachingAssessment:
    """Whether the JWKS caching headers let verifiers see a new key before it signs."""

    safe: bool | None
    lifetime: int | None
    overlap: float | None
    overlap_source: str
    skew: float
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "safe": self.safe,
            "cache_lifetime_seconds": self.lifetime,
            "overlap_seconds": self.overlap,
            "overlap_source": self.overlap_source,
            "clock_skew_seconds": self.skew,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DiagnoseReport:
    """Everything ``diagnose`` found, with one verdict, its likely cause and the fix."""

    verdict: Verdict
    cause: str
    summary: str
    fix: str
    now: float
    evidence: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    token: TokenInfo | None = None
    discovery: DiscoveryReport | None = None
    jwks: JwksReport | None = None
    refetch: JwksReport | None = None
    caching: CachingAssessment | None = None
    verified: bool = False
    revoked: dict[str, dict[str, Any]] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "exit_code": self.exit_code,
            "verified": self.verified,
            "cause": self.cause,
            "summary": self.summary,
            "fix": self.fix,
            "evidence": list(self.evidence),
            "findings": [f.to_dict() for f in self.findings],
            "now": self.now,
            "token": None if self.token is None else self.token.to_dict(),
            "discovery": None if self.discovery is None else self.discovery.to_dict(),
            "jwks": None if self.jwks is None else self.jwks.to_dict(),
            "jwks_no_cache_refetch": None if self.refetch is None else self.refetch.to_dict(),
            "caching": None if self.caching is None else self.caching.to_dict(),
            "revoked_kids": self.revoked,
        }
