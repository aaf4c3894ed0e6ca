"""The management API, ``/api/v1`` (FastAPI): tenants, keys, tokens, plan, audit.

Handlers are plain ``def``: the key service blocks on the database, so FastAPI runs them in
its thread pool. Every handler checks the caller's right on the tenant named in the path
before touching that tenant. (No ``from __future__ import annotations`` here: FastAPI must
resolve the handler annotations, some of which are local to ``build_router``.)
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyturn.config import Settings
from keyturn.durations import parse_duration
from keyturn.errors import InvalidInputError, TokenError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyState, Policy
from keyturn.ring.policy_contract import PolicyChange
from keyturn.ring.timeline import plan
from keyturn.server.auth import Principal, Right, authenticate
from keyturn.server.models import (
    KID_PATTERN,
    TENANT_PATTERN,
    AuditOut,
    AuditPage,
    ImportIn,
    IssuerUpdate,
    JwksEntry,
    KeyOut,
    OutcomeOut,
    PlanOut,
    PolicyUpdate,
    RevokeIn,
    RotateIn,
    SignBatchIn,
    SignBatchOut,
    SignIn,
    SignOut,
    StepOut,
    TenantCreate,
    TenantOut,
    VerifyIn,
    VerifyOut,
)
from keyturn.server.signing import SignStep, sign_items
from keyturn.service import KeyService, Outcome
from keyturn.store.apikeys import ApiKeyStore

MAX_AUDIT_PAGE = 500
DEFAULT_HORIZON = "90d"


class ApiObserver(Protocol):
    """Metrics hook for the API: tokens signed and verified, key-ring changes made."""

    def signed(self, tenant: str, token: str) -> None: ...

    def verified(self, tenant: str, reason: str) -> None: ...

    def changed(self, outcome: Outcome, trigger: Literal["scheduled", "manual"]) -> None: ...


@dataclass(frozen=True)
class ApiContext:
    service: KeyService
    api_keys: ApiKeyStore
    settings: Settings
    observer: ApiObserver | None = None
    sign: SignStep | None = None  # the sign step (default: the service's sign)


# Declared for the OpenAPI document (the security scheme); the check itself is ours, so a
# missing or malformed header gets the same 401 problem as a wrong key.
_bearer = HTTPBearer(auto_error=False, description="an API key: kt_<key id>_<secret>")

TenantPath = Annotated[str, Path(pattern=TENANT_PATTERN, max_length=63)]
KidPath = Annotated[str, Path(pattern=KID_PATTERN, max_length=128)]


def build_router(ctx: ApiContext) -> APIRouter:
    svc = ctx.service
    observer = ctx.observer
    sign_step: SignStep = ctx.sign or svc.sign

    def done(res: Outcome) -> OutcomeOut:
        if observer is not None:
            observer.changed(res, "manual")
        return OutcomeOut.of(res)

    def principal(
        request: Request,
        _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return authenticate(ctx.api_keys, request.headers.get("authorization"))

    Caller = Annotated[Principal, Depends(principal)]
    r = APIRouter(prefix="/api/v1")

    # --- tenants -------------------------------------------------------------------------
    @r.get("/tenants", response_model=list[TenantOut], tags=["tenants"])
    def list_tenants(p: Caller) -> list[TenantOut]:
        """Every tenant (admin); a scoped key sees only its own."""
        if p.is_admin:
            return [TenantOut.of(t) for t in svc.tenants()]
        p.require(Right.READ, p.key.tenant)
        assert p.key.tenant is not None
        return [TenantOut.of(svc.tenant(p.key.tenant))]

    @r.post("/tenants", response_model=OutcomeOut, status_code=201, tags=["tenants"])
    def create_tenant(body: TenantCreate, p: Caller) -> OutcomeOut:
        """Create a tenant with its first current and next keys (admin)."""
        p.require(Right.GLOBAL)
        fields = body.policy.changes()
        if "alg" in fields:
            fields["alg"] = Alg(fields["alg"])
        res = svc.create_tenant(
            body.name,
            issuer=body.issuer or ctx.settings.issuer_for(body.name),
            policy=Policy(**fields),
            force=body.force,
            actor=p.actor,
        )
        return done(res)

    @r.get("/tenants/{tenant}", response_model=TenantOut, tags=["tenants"])
    def show_tenant(tenant: TenantPath, p: Caller) -> TenantOut:
        p.require(Right.READ, tenant)
        return TenantOut.of(svc.tenant(tenant))

    @r.patch("/tenants/{tenant}/policy", response_model=OutcomeOut, tags=["tenants"])
    def update_policy(tenant: TenantPath, body: PolicyUpdate, p: Caller) -> OutcomeOut:
        """Change policy fields; an unsafe policy is refused (422) unless ``force`` (audited)."""
        p.require(Right.MANAGE, tenant)
        fields = body.changes()
        if not fields:
            raise InvalidInputError("nothing to change: give at least one policy field")
        if "alg" in fields:
            fields["alg"] = Alg(fields["alg"])
        change = PolicyChange.from_mapping(fields)
        return done(svc.change_policy(tenant, change, actor=p.actor, force=body.force))

    @r.put("/tenants/{tenant}/issuer", response_model=OutcomeOut, tags=["tenants"])
    def update_issuer(tenant: TenantPath, body: IssuerUpdate, p: Caller) -> OutcomeOut:
        """Change the issuer. Live tokens carry the old one: refused (409
        ``issuer_change_refused``) unless ``force``; audited as ``tenant.issuer_changed``."""
        p.require(Right.MANAGE, tenant)
        return done(
            svc.change_issuer(
                tenant, body.issuer, actor=p.actor, force=body.force, reason=body.reason
            )
        )

    # --- keys ----------------------------------------------------------------------------
    @r.get("/tenants/{tenant}/keys", response_model=list[KeyOut], tags=["keys"])
    def list_keys(
        tenant: TenantPath,
        p: Caller,
        include_all: Annotated[
            bool, Query(alias="all", description="include retired and revoked keys")
        ] = False,
    ) -> list[KeyOut]:
        p.require(Right.READ, tenant)
        _, ring = svc.ring(tenant)
        keys = ring.keys if include_all else [k for k in ring.keys if k.published]
        return [KeyOut.of(k) for k in sorted(keys, key=lambda k: k.created_at, reverse=True)]

    @r.get("/tenants/{tenant}/keys/{kid}", response_model=KeyOut, tags=["keys"])
    def show_key(tenant: TenantPath, kid: KidPath, p: Caller) -> KeyOut:
        p.require(Right.READ, tenant)
        return KeyOut.of(svc.find_key(tenant, kid))

    @r.post("/tenants/{tenant}/keys/rotate", response_model=OutcomeOut, tags=["keys"])
    def rotate(tenant: TenantPath, body: RotateIn, p: Caller) -> OutcomeOut:
        """Rotate now; with ``if_current``, only if that kid still signs (else 409)."""
        p.require(Right.MANAGE, tenant)
        return done(
            svc.rotate(tenant, actor=p.actor, reason=body.reason, if_current=body.if_current)
        )

    @r.post("/tenants/{tenant}/keys/{kid}/revoke", response_model=OutcomeOut, tags=["keys"])
    def revoke(tenant: TenantPath, kid: KidPath, body: RevokeIn, p: Caller) -> OutcomeOut:
        """Revoke a key: removed from the JWKS and announced on the revocation feed at once."""
        p.require(Right.MANAGE, tenant)
        return done(svc.revoke(tenant, kid, reason=body.reason, actor=p.actor))

    @r.post("/tenants/{tenant}/keys/rotate-and-revoke", response_model=OutcomeOut, tags=["keys"])
    def rotate_and_revoke(tenant: TenantPath, body: RevokeIn, p: Caller) -> OutcomeOut:
        """Compromised current key: revoke it; next signs at once."""
        p.require(Right.MANAGE, tenant)
        return done(svc.rotate_and_revoke(tenant, reason=body.reason, actor=p.actor))

    @r.post("/tenants/{tenant}/keys/revoke-all", response_model=OutcomeOut, tags=["keys"])
    def revoke_all(tenant: TenantPath, body: RevokeIn, p: Caller) -> OutcomeOut:
        """Leaked key store: revoke every published key; a fresh current and next."""
        p.require(Right.MANAGE, tenant)
        return done(svc.revoke_all(tenant, reason=body.reason, actor=p.actor))

    @r.post("/tenants/{tenant}/keys/import", response_model=OutcomeOut, tags=["keys"])
    def import_key(tenant: TenantPath, body: ImportIn, p: Caller) -> OutcomeOut:
        """Import a private key (PEM, PKCS#12 or JWK, base64) as next, current or previous."""
        p.require(Right.MANAGE, tenant)
        try:
            data = base64.b64decode(body.key, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError("key must be base64 (standard alphabet)") from None
        password = body.password.encode() if body.password is not None else None
        res = svc.import_key(
            tenant,
            data,
            actor=p.actor,
            fmt=body.format,
            password=password,
            as_state=KeyState(body.as_state),
            replace_next=body.replace_next,
        )
        return done(res)

    # --- tokens --------------------------------------------------------------------------
    @r.post("/tenants/{tenant}/tokens/sign", response_model=SignOut, tags=["tokens"])
    def sign(tenant: TenantPath, body: SignIn, p: Caller) -> SignOut:
        """Sign claims with the current key. ``iss``, ``iat``, ``exp`` are set by keyturn."""
        p.require(Right.SIGN, tenant)
        token, claims = sign_step(tenant, body.claims, ttl=body.ttl)
        if observer is not None:
            observer.signed(tenant, token)
        return SignOut(token=token, claims=claims)

    @r.post("/tenants/{tenant}/tokens/sign-batch", response_model=SignBatchOut, tags=["tokens"])
    def sign_batch(tenant: TenantPath, body: SignBatchIn, p: Caller) -> SignBatchOut:
        """Sign 1 to 100 claim sets with the current key, all or none (the first failure names
        its index, ``items[i]: ...``, and no token is returned)."""
        p.require(Right.SIGN, tenant)
        done = sign_items(sign_step, tenant, [(i.claims, i.ttl) for i in body.items])
        if observer is not None:
            for token, _claims in done:
                observer.signed(tenant, token)
        return SignBatchOut(items=[SignOut(token=t, claims=c) for t, c in done])

    @r.post("/tenants/{tenant}/tokens/verify", response_model=VerifyOut, tags=["tokens"])
    def verify(tenant: TenantPath, body: VerifyIn, p: Caller) -> VerifyOut:
        """Verify a token against the published keys: 200 either way, ``valid`` says which."""
        p.require(Right.VERIFY, tenant)
        svc.tenant(tenant)  # an unknown tenant is a 404, not an invalid token
        try:
            claims, kid = svc.verify(tenant, body.token, audience=body.audience)
        except TokenError as exc:
            if observer is not None:
                observer.verified(tenant, exc.code)
            return VerifyOut(valid=False, code=exc.code, detail=exc.detail, action=exc.action)
        if observer is not None:
            observer.verified(tenant, "ok")
        return VerifyOut(valid=True, kid=kid, claims=claims)

    # --- plan and audit ------------------------------------------------------------------
    @r.get("/tenants/{tenant}/plan", response_model=PlanOut, tags=["plan"])
    def get_plan(
        tenant: TenantPath,
        p: Caller,
        horizon: Annotated[
            str, Query(max_length=32, description="how far ahead, e.g. 90d, 12h, 3600")
        ] = DEFAULT_HORIZON,
    ) -> PlanOut:
        """Every scheduled transition within ``horizon`` and the JWKS after each."""
        p.require(Right.READ, tenant)
        seconds = parse_duration(horizon)
        _, ring = svc.ring(tenant)
        now = svc.clock.now()
        steps = [
            StepOut(
                at=s.at,
                event=s.event,
                kids=list(s.kids),
                jwks=[JwksEntry(kid=k, state=st) for k, st in s.jwks],
                signing=s.signing,
            )
            for s in plan(ring, now, seconds)
        ]
        return PlanOut(
            tenant=tenant,
            now=now,
            rotation="automatic" if ring.policy.auto_rotate else "manual",
            steps=steps,
        )

    @r.get("/audit", response_model=AuditPage, tags=["audit"])
    def audit(
        p: Caller,
        tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN, max_length=63)] = None,
        kid: Annotated[str | None, Query(pattern=KID_PATTERN, max_length=128)] = None,
        event: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        until: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    ) -> AuditPage:
        """Audit records, newest first. A scoped key sees its own tenant's records only."""
        if not p.is_admin:
            tenant = tenant or p.key.tenant
        p.require(Right.READ if tenant is not None else Right.GLOBAL, tenant)
        recs = svc.audit_records(
            tenant=tenant,
            kid=kid,
            event_name=event,
            since=since,
            until=until,
            after_id=int(cursor) if cursor is not None else None,
            limit=limit + 1,
        )
        more = len(recs) > limit
        recs = recs[:limit]
        return AuditPage(
            items=[AuditOut.of(x) for x in recs],
            next_cursor=str(recs[-1].id) if more and recs else None,
        )

    return r
