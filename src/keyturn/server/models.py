"""Request and response bodies of the management API (pydantic; requests strict, no extras)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyturn.ring.model import KeyRecord, Policy
from keyturn.ring.policy_contract import MAX_DURATION, MIN_DURATION, MIN_SKEW
from keyturn.ring.records import AuditRecord, Tenant
from keyturn.server.signing import MAX_BATCH
from keyturn.service import MAX_REASON_LENGTH, Outcome

TENANT_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
KID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
TEN_YEARS = MAX_DURATION
# exp/nbf beyond this are not times: refuse them before they reach integer conversion.
MAX_TIMESTAMP = 1e11

AlgName = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"]
StateName = Literal["next", "current", "previous", "retired", "revoked"]
# At least one second: max-age is whole seconds, and sub-second periods are never a policy
# (the core's policy check also overflows on denormal periods like 5e-324).
Duration = Annotated[float, Field(ge=MIN_DURATION, le=MAX_DURATION, allow_inf_nan=False)]
Skew = Annotated[float, Field(ge=MIN_SKEW, le=MAX_DURATION, allow_inf_nan=False)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_LENGTH)]
TenantName = Annotated[str, Field(pattern=TENANT_PATTERN, max_length=63)]
Kid = Annotated[str, Field(pattern=KID_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PolicyIn(_Strict):
    """Policy fields; omitted ones keep their value (or the default, on create). Seconds."""

    alg: AlgName | None = None
    rotation_period: Duration | None = None
    token_ttl: Duration | None = None
    jwks_max_age: Duration | None = None
    clock_skew: Skew | None = None
    rsa_bits: Literal[2048, 3072, 4096] | None = None
    auto_rotate: Annotated[
        bool | None,
        Field(description="false: the scheduler never rotates (manual rotation); default true"),
    ] = None

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None and k != "force"}


class TenantCreate(_Strict):
    name: TenantName
    issuer: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = None
    policy: PolicyIn = Field(default_factory=PolicyIn)
    force: bool = False


class IssuerUpdate(_Strict):
    issuer: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
    force: bool = Field(
        False, description="change it although live tokens carry the old issuer (audited)"
    )
    reason: Annotated[str, Field(max_length=500)] | None = None


class PolicyUpdate(PolicyIn):
    force: bool = False


class RotateIn(_Strict):
    reason: Reason | None = None
    if_current: Kid | None = None


class RevokeIn(_Strict):
    reason: Reason


class ImportIn(_Strict):
    key: Annotated[
        str,
        Field(
            min_length=4,
            pattern=r"^[A-Za-z0-9+/]+={0,2}$",
            description="the key file, base64 (standard alphabet)",
        ),
    ]
    format: Literal["pem", "pkcs12", "jwk"] | None = None
    password: Annotated[str, Field(max_length=1024)] | None = None
    as_state: Literal["next", "current", "previous"] = "next"
    replace_next: bool = Field(
        False,
        description="as next: retire the existing next key and destroy its private key "
        "(refused with 409 invalid_transition without it when the tenant has a next key)",
    )


def _check_json_values(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("claims nested deeper than 32 levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("claims must not contain NaN or infinity")
    if isinstance(value, dict):
        for v in value.values():
            _check_json_values(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_values(v, depth + 1)


class SignIn(_Strict):
    claims: dict[str, Any] = Field(default_factory=dict)
    ttl: Duration | None = None

    @field_validator("claims")
    @classmethod
    def _claims_json(cls, claims: dict[str, Any]) -> dict[str, Any]:
        _check_json_values(claims)
        try:
            orjson.dumps(claims)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ValueError(f"claims cannot be encoded: {exc}") from None
        for name in ("exp", "nbf"):
            v = claims.get(name)
            if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_TIMESTAMP:
                raise ValueError(f"claim {name!r} is not a plausible time")
        return claims


class SignBatchIn(_Strict):
    """Up to 100 claim sets signed in one request, all or none."""

    items: Annotated[list[SignIn], Field(min_length=1, max_length=MAX_BATCH)]


class VerifyIn(_Strict):
    token: Annotated[str, Field(min_length=1, max_length=16384)]
    audience: Annotated[str, Field(min_length=1, max_length=2048)] | None = None


# --- responses ---------------------------------------------------------------------------
class PolicyOut(BaseModel):
    alg: AlgName
    rotation_period: float
    token_ttl: float
    jwks_max_age: float
    clock_skew: float
    rsa_bits: int
    auto_rotate: bool
    prepublication: float = Field(description="C + S: how long a key is published before it signs")
    retention: float = Field(description="max(2T, T + C + S): how long it stays after")

    @classmethod
    def of(cls, p: Policy) -> PolicyOut:
        return cls(
            alg=p.alg.value,
            rotation_period=p.rotation_period,
            token_ttl=p.token_ttl,
            jwks_max_age=p.jwks_max_age,
            clock_skew=p.clock_skew,
            rsa_bits=p.rsa_bits,
            auto_rotate=p.auto_rotate,
            prepublication=p.prepublication,
            retention=p.retention,
        )


class TenantOut(BaseModel):
    name: str
    issuer: str
    policy: PolicyOut
    policy_forced: bool
    key_version: int
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(
            name=t.name,
            issuer=t.issuer,
            policy=PolicyOut.of(t.policy),
            policy_forced=t.policy_forced,
            key_version=t.key_version,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class KeyOut(BaseModel):
    """Public data of a key: never its private material."""

    kid: str
    alg: AlgName
    state: StateName
    origin: str
    created_at: float
    activated_at: float | None
    deactivated_at: float | None
    retire_after: float | None
    retired_at: float | None
    revoked_at: float | None
    revocation_reason: str | None
    has_private_key: bool
    public_jwk: dict[str, Any]

    @classmethod
    def of(cls, k: KeyRecord) -> KeyOut:
        return cls.model_validate(k.public_view())


class EventOut(BaseModel):
    event: str
    kid: str | None
    details: dict[str, Any]


class OutcomeOut(BaseModel):
    tenant: TenantOut
    events: list[EventOut]
    warnings: list[str]
    policy_violations_forced: list[str]

    @classmethod
    def of(cls, o: Outcome) -> OutcomeOut:
        return cls(
            tenant=TenantOut.of(o.tenant),
            events=[EventOut(event=e.event, kid=e.kid, details=e.details) for e in o.change.events],
            warnings=list(o.warnings),
            policy_violations_forced=list(o.violations),
        )


class SignOut(BaseModel):
    token: str
    claims: dict[str, Any]


class SignBatchOut(BaseModel):
    items: list[SignOut]


class VerifyOut(BaseModel):
    """``valid`` false carries the error ``code``, a ``detail`` and the ``action`` to take."""

    valid: bool
    kid: str | None = None
    claims: dict[str, Any] | None = None
    code: str | None = None
    detail: str | None = None
    action: Literal["reject", "try_refresh", "refresh", "retry"] | None = None


class JwksEntry(BaseModel):
    kid: str
    state: str


class StepOut(BaseModel):
    at: float
    event: str
    kids: list[str]
    jwks: list[JwksEntry]
    signing: str


class PlanOut(BaseModel):
    tenant: str
    now: float
    rotation: Literal["automatic", "manual"] = Field(
        "automatic", description="manual: automatic rotation is off, no rotation is scheduled"
    )
    steps: list[StepOut]


class AuditOut(BaseModel):
    id: int
    at: float
    actor: str
    tenant: str | None
    kid: str | None
    event: str
    reason: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, r: AuditRecord) -> AuditOut:
        return cls.model_validate(r.to_dict())


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is keyturn's stable error code."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str


class Health(BaseModel):
    status: str
