"""Management API for sessions (``/api/v1``): OAuth clients, the session policy, sessions.

Rights: managers (and admins) create, rotate and revoke OAuth clients and set the session
policy; signers open sessions for subjects their app authenticated, list them and revoke them
("log out everywhere"); managers may list and revoke sessions too; viewers read. (No
``from __future__ import annotations``: FastAPI resolves these annotations at runtime.)
"""

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyturn.errors import ForbiddenError
from keyturn.server.api import ApiContext, _bearer
from keyturn.server.auth import Principal, Right, authenticate
from keyturn.server.models import TEN_YEARS, TENANT_PATTERN
from keyturn.sessions.model import (
    AUTH_METHODS,
    GRANT_TYPES,
    MAX_AUDIENCE,
    MAX_DESCRIPTION,
    MAX_REASON,
    MAX_SUBJECT_LENGTH,
    OAuthClient,
    Session,
    SessionPolicy,
)
from keyturn.sessions.service import MAX_SESSIONS_PAGE, SessionService, TokenResponse

CLIENT_ID_PATTERN = r"^ktc_[0-9a-f]{24}$"
SESSION_ID_PATTERN = r"^[0-9a-f]{32}$"
TenantPath = Annotated[str, Path(pattern=TENANT_PATTERN, max_length=63)]
ClientPath = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, max_length=28)]
SessionPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN, max_length=32)]
AuthMethodName = Literal["client_secret_basic", "client_secret_post", "none"]
GrantName = Literal["client_credentials", "refresh_token"]
Subject = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT_LENGTH)]
Scope = Annotated[str, Field(max_length=2048)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON)]
Seconds = Annotated[float, Field(gt=0, le=TEN_YEARS, allow_inf_nan=False)]
assert set(AUTH_METHODS) == {"client_secret_basic", "client_secret_post", "none"}
assert set(GRANT_TYPES) == {"client_credentials", "refresh_token"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClientCreate(_Strict):
    token_endpoint_auth_method: AuthMethodName = "client_secret_basic"  # noqa: S105
    grant_types: Annotated[list[GrantName], Field(min_length=1, max_length=2)] = [
        "client_credentials",
        "refresh_token",
    ]
    scope: Scope | None = None
    audience: Annotated[str, Field(min_length=1, max_length=MAX_AUDIENCE)] | None = None
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None


class ClientOut(BaseModel):
    client_id: str
    tenant: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    scope: str
    audience: str | None
    description: str | None
    created_at: float
    secret_rotated_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, c: OAuthClient) -> "ClientOut":
        return cls(**c.to_dict())


class ClientWithSecret(ClientOut):
    client_secret: str | None = Field(description="shown once; None for a public client")


class SessionPolicyIO(BaseModel):
    access_ttl: float
    idle_ttl: float
    absolute_ttl: float
    reuse_grace: float

    @classmethod
    def of(cls, p: SessionPolicy) -> "SessionPolicyIO":
        return cls(**p.to_dict())


class SessionPolicyUpdate(_Strict):
    access_ttl: Seconds | None = None
    idle_ttl: Seconds | None = None
    absolute_ttl: Seconds | None = None
    reuse_grace: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] | None = None


def _check_claims(claims: dict[str, Any]) -> dict[str, Any]:
    from keyturn.server.models import _check_json_values

    _check_json_values(claims)
    try:
        orjson.dumps(claims)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError(f"claims cannot be encoded: {exc}") from None
    return claims


class SessionOpen(_Strict):
    client_id: Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
    subject: Subject
    claims: dict[str, Any] = Field(default_factory=dict)
    scope: Scope | None = None

    @field_validator("claims")
    @classmethod
    def _claims(cls, claims: dict[str, Any]) -> dict[str, Any]:
        return _check_claims(claims)


class SessionOut(BaseModel):
    session_id: str
    tenant: str
    client_id: str
    subject: str
    claims: dict[str, Any]
    scope: str
    created_at: float
    absolute_expires_at: float
    last_used_at: float | None
    refreshes: int
    revoked_at: float | None
    revoked_reason: str | None

    @classmethod
    def of(cls, s: Session) -> "SessionOut":
        return cls(**s.to_dict())


class SessionOpened(BaseModel):
    """RFC 6749 section 5.1 fields, plus the session."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int
    refresh_token: str
    scope: str | None = None
    session: SessionOut

    @classmethod
    def of(cls, s: Session, t: TokenResponse) -> "SessionOpened":
        assert t.refresh_token is not None
        return cls(
            access_token=t.access_token,
            expires_in=t.expires_in,
            refresh_token=t.refresh_token,
            scope=" ".join(t.scope) or None,
            session=SessionOut.of(s),
        )


class SessionRevokeIn(_Strict):
    reason: Reason | None = None


class SubjectRevokeIn(_Strict):
    subject: Subject
    reason: Reason | None = None


class SubjectRevoked(BaseModel):
    subject: str
    revoked: list[str]


def build_sessions_router(ctx: ApiContext, sessions: SessionService) -> APIRouter:
    def principal(
        request: Request,
        _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return authenticate(ctx.api_keys, request.headers.get("authorization"))

    Caller = Annotated[Principal, Depends(principal)]
    r = APIRouter(prefix="/api/v1/tenants/{tenant}")

    def require_any(p: Principal, tenant: str, *rights: Right) -> None:
        if not any(p.can(right, tenant) for right in rights):
            names = " or ".join(x.value for x in rights)
            raise ForbiddenError(
                f"this API key ({p.key.role.value}) may not {names} on tenant {tenant!r}"
            )

    # --- OAuth clients ---------------------------------------------------------------------
    @r.post("/oauth-clients", response_model=ClientWithSecret, status_code=201, tags=["oauth"])
    def create_client(tenant: TenantPath, body: ClientCreate, p: Caller) -> ClientWithSecret:
        """Create an OAuth client; its secret is in this response only."""
        p.require(Right.MANAGE, tenant)
        client, secret = sessions.create_client(
            tenant,
            actor=p.actor,
            auth_method=body.token_endpoint_auth_method,
            grant_types=list(body.grant_types),
            scope=body.scope,
            audience=body.audience,
            description=body.description,
        )
        return ClientWithSecret(**client.to_dict(), client_secret=secret)

    @r.get("/oauth-clients", response_model=list[ClientOut], tags=["oauth"])
    def list_clients(
        tenant: TenantPath,
        p: Caller,
        include_all: Annotated[bool, Query(alias="all", description="include revoked")] = False,
    ) -> list[ClientOut]:
        p.require(Right.READ, tenant)
        return [ClientOut.of(c) for c in sessions.clients(tenant, include_revoked=include_all)]

    @r.get("/oauth-clients/{client_id}", response_model=ClientOut, tags=["oauth"])
    def show_client(tenant: TenantPath, client_id: ClientPath, p: Caller) -> ClientOut:
        p.require(Right.READ, tenant)
        return ClientOut.of(sessions.client(tenant, client_id))

    @r.post(
        "/oauth-clients/{client_id}/rotate-secret", response_model=ClientWithSecret, tags=["oauth"]
    )
    def rotate_secret(tenant: TenantPath, client_id: ClientPath, p: Caller) -> ClientWithSecret:
        """A new secret, in this response only; the old one stops working at once."""
        p.require(Right.MANAGE, tenant)
        client, secret = sessions.rotate_secret(tenant, client_id, actor=p.actor)
        return ClientWithSecret(**client.to_dict(), client_secret=secret)

    @r.post("/oauth-clients/{client_id}/revoke", response_model=ClientOut, tags=["oauth"])
    def revoke_client(tenant: TenantPath, client_id: ClientPath, p: Caller) -> ClientOut:
        """Revoke the client and every session opened through it."""
        p.require(Right.MANAGE, tenant)
        return ClientOut.of(sessions.revoke_client(tenant, client_id, actor=p.actor))

    # --- policy ----------------------------------------------------------------------------
    @r.get("/session-policy", response_model=SessionPolicyIO, tags=["sessions"])
    def get_policy(tenant: TenantPath, p: Caller) -> SessionPolicyIO:
        require_any(p, tenant, Right.READ, Right.SIGN)
        return SessionPolicyIO.of(sessions.policy(tenant))

    @r.patch("/session-policy", response_model=SessionPolicyIO, tags=["sessions"])
    def set_policy(tenant: TenantPath, body: SessionPolicyUpdate, p: Caller) -> SessionPolicyIO:
        """Lifetimes in seconds; access tokens are further capped by the tenant's T."""
        p.require(Right.MANAGE, tenant)
        return SessionPolicyIO.of(sessions.set_policy(tenant, actor=p.actor, **body.model_dump()))

    # --- sessions --------------------------------------------------------------------------
    @r.post("/sessions", response_model=SessionOpened, status_code=201, tags=["sessions"])
    def open_session(tenant: TenantPath, body: SessionOpen, p: Caller) -> SessionOpened:
        """Open a session for a subject your backend authenticated: access + refresh token."""
        p.require(Right.SIGN, tenant)
        sess, tokens = sessions.open_session(
            tenant,
            client_id=body.client_id,
            subject=body.subject,
            claims=body.claims,
            scope=body.scope,
            actor=p.actor,
        )
        return SessionOpened.of(sess, tokens)

    @r.get("/sessions", response_model=list[SessionOut], tags=["sessions"])
    def list_sessions(
        tenant: TenantPath,
        p: Caller,
        subject: Annotated[str | None, Query(min_length=1, max_length=MAX_SUBJECT_LENGTH)] = None,
        client_id: Annotated[str | None, Query(pattern=CLIENT_ID_PATTERN)] = None,
        include_all: Annotated[
            bool, Query(alias="all", description="include revoked and expired")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_SESSIONS_PAGE)] = 100,
    ) -> list[SessionOut]:
        """Sessions, newest first (a subject's, a client's, or all)."""
        require_any(p, tenant, Right.READ, Right.SIGN)
        found = sessions.sessions(
            tenant, subject=subject, client_id=client_id, include_ended=include_all, limit=limit
        )
        return [SessionOut.of(s) for s in found]

    @r.post("/sessions/revoke-subject", response_model=SubjectRevoked, tags=["sessions"])
    def revoke_subject(tenant: TenantPath, body: SubjectRevokeIn, p: Caller) -> SubjectRevoked:
        """Log out everywhere: revoke every active session of the subject."""
        require_any(p, tenant, Right.SIGN, Right.MANAGE)
        ids = sessions.revoke_subject(tenant, body.subject, actor=p.actor, reason=body.reason)
        return SubjectRevoked(subject=body.subject, revoked=ids)

    @r.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
    def show_session(tenant: TenantPath, session_id: SessionPath, p: Caller) -> SessionOut:
        require_any(p, tenant, Right.READ, Right.SIGN)
        return SessionOut.of(sessions.session(tenant, session_id))

    @r.post("/sessions/{session_id}/revoke", response_model=SessionOut, tags=["sessions"])
    def revoke_session(
        tenant: TenantPath, session_id: SessionPath, body: SessionRevokeIn, p: Caller
    ) -> SessionOut:
        require_any(p, tenant, Right.SIGN, Right.MANAGE)
        return SessionOut.of(
            sessions.revoke_session(tenant, session_id, actor=p.actor, reason=body.reason)
        )

    return r
