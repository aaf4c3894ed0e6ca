"""The session service: OAuth clients, grants and sessions, each one audited transaction.

Access tokens are signed by the tenant's ring through :meth:`KeyService.sign`, so the policy's
T caps them like any other token; refresh tokens are random strings stored as digests and never
touch a ring key, so a ``revoke-all`` of the keys leaves every session alive: the client's next
refresh gets an access token signed by the fresh key. Grants (``client_credentials``, refresh)
are not audited one by one, like signing; everything that changes who may get tokens is
(clients, sessions opened and revoked, policy), and so is every detected reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from keyturn.clock import Clock
from keyturn.errors import InvalidInputError
from keyturn.ring.records import Tenant
from keyturn.service import KeyService, _Prepared
from keyturn.sessions.errors import (
    ClientNotFoundError,
    ClientRevokedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    SessionNotFoundError,
    UnauthorizedClientError,
    UnsupportedTokenTypeError,
)
from keyturn.sessions.model import (
    AuthMethod,
    GrantType,
    OAuthClient,
    Session,
    SessionPolicy,
    check_client_fields,
    check_reason,
    check_session_claims,
    check_subject,
    digests_match,
    hash_secret,
    looks_like_refresh_token,
    new_client_id,
    new_refresh_token,
    new_secret,
    new_session_id,
    parse_scope,
    valid_client_id,
)
from keyturn.sessions.rotation import REFUSAL_REASONS, Verdict, first_token, judge, successor
from keyturn.store.sessions import SessionRepo

MAX_SESSION_CLAIMS_BYTES = 4 * 1024
MAX_SESSIONS_PAGE = 500
# Refused presentations of a revoked session's tokens audited per session; the rest are only
# refused, so a replay loop cannot grow the audit log without bound.
MAX_AUDITED_REFUSALS = 5
DEFAULT_PURGE_KEEP = 7 * 86400.0
REUSE_REASON = "refresh token reuse detected"


@dataclass(frozen=True)
class ClientCredentials:
    """What a request presented to authenticate a client (RFC 6749 section 2.3)."""

    client_id: str
    secret: str | None
    method: AuthMethod


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 section 5.1)."""

    access_token: str
    expires_in: int
    refresh_token: str | None = None
    scope: tuple[str, ...] = ()
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.scope:
            body["scope"] = " ".join(self.scope)
        return body


class SessionService:
    """Every sessions operation, on the key service's store, ring signing and clock."""

    def __init__(self, keys: KeyService, clock: Clock | None = None) -> None:
        self.keys = keys
        self.store = keys.store
        self.clock = clock or keys.clock

    # --- helpers ---------------------------------------------------------------------------
    def _tenant(self, name: str) -> Tenant:
        return self.store.tenant(name)

    def _client_row(self, tenant: Tenant, client_id: str) -> tuple[OAuthClient, str | None]:
        if not valid_client_id(client_id):
            raise ClientNotFoundError(f"tenant {tenant.name} has no OAuth client {client_id!r}")
        with self.store.read() as tx:
            found = SessionRepo(tx).client(tenant.id, tenant.name, client_id)
        if found is None:
            raise ClientNotFoundError(f"tenant {tenant.name} has no OAuth client {client_id!r}")
        return found

    def _access_ttl(self, policy: SessionPolicy, tenant: Tenant) -> float:
        return min(policy.access_ttl, tenant.policy.token_ttl)

    def _sign(self, p: _Prepared, claims: dict[str, Any], ttl: float) -> tuple[str, int]:
        # With the signer prepared before the transaction opened: signing inside it must not
        # need a second pooled connection (N concurrent refreshes would exhaust the pool).
        token, full = self.keys.sign(p.tenant.name, claims, ttl=ttl, prepared=p)
        return token, int(full["exp"]) - int(full["iat"])

    @staticmethod
    def _session_claims(sess: Session) -> dict[str, Any]:
        claims = dict(sess.claims)
        claims.update(sub=sess.subject, sid=sess.session_id, client_id=sess.client_id)
        if sess.scope:
            claims["scope"] = " ".join(sess.scope)
        return claims

    # --- OAuth clients ---------------------------------------------------------------------
    def create_client(
        self,
        tenant: str,
        *,
        actor: str,
        auth_method: str = AuthMethod.BASIC.value,
        grant_types: list[str] | tuple[str, ...] = (
            GrantType.CLIENT_CREDENTIALS.value,
            GrantType.REFRESH_TOKEN.value,
        ),
        scope: str | None = None,
        audience: str | None = None,
        description: str | None = None,
    ) -> tuple[OAuthClient, str | None]:
        """Create a client; returns (record, secret shown once; None for a public client)."""
        method, grants, scopes = check_client_fields(
            auth_method, grant_types, scope, audience, description
        )
        t = self._tenant(tenant)
        now = self.clock.now()
        secret = new_secret() if method != AuthMethod.NONE else None
        client = OAuthClient(
            client_id=new_client_id(),
            tenant=t.name,
            auth_method=method,
            grant_types=grants,
            scope=scopes,
            audience=audience,
            description=description,
            created_at=now,
            secret_rotated_at=None,
            revoked_at=None,
        )
        with self.store.write() as tx:
            SessionRepo(tx).insert_client(
                t.id, client, hash_secret(secret) if secret is not None else None
            )
            tx.audit(
                at=now,
                actor=actor,
                event="oauth_client.created",
                tenant=t.name,
                details={k: v for k, v in client.to_dict().items() if k != "tenant"},
            )
        return client, secret

    def clients(self, tenant: str, *, include_revoked: bool = False) -> list[OAuthClient]:
        t = self._tenant(tenant)
        with self.store.read() as tx:
            return SessionRepo(tx).clients(t.id, t.name, include_revoked=include_revoked)

    def client(self, tenant: str, client_id: str) -> OAuthClient:
        return self._client_row(self._tenant(tenant), client_id)[0]

    def rotate_secret(self, tenant: str, client_id: str, *, actor: str) -> tuple[OAuthClient, str]:
        """A new secret; the old one stops working at once (deploy the new one first)."""
        t = self._tenant(tenant)
        client, _ = self._client_row(t, client_id)
        if not client.confidential:
            raise InvalidInputError("a public client has no secret to rotate")
        if not client.active:
            raise ClientRevokedError(f"OAuth client {client_id} is revoked")
        secret = new_secret()
        now = self.clock.now()
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            found = repo.client(t.id, t.name, client_id, lock=True)
            if found is None or not found[0].active:
                raise ClientRevokedError(f"OAuth client {client_id} is revoked")
            repo.set_secret(t.id, client_id, hash_secret(secret), now)
            tx.audit(
                at=now,
                actor=actor,
                event="oauth_client.secret_rotated",
                tenant=t.name,
                details={"client_id": client_id},
            )
        return replace(client, secret_rotated_at=now), secret

    def revoke_client(self, tenant: str, client_id: str, *, actor: str) -> OAuthClient:
        """Revoke a client and, in the same transaction, every session opened through it."""
        t = self._tenant(tenant)
        client, _ = self._client_row(t, client_id)
        now = self.clock.now()
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            found = repo.client(t.id, t.name, client_id, lock=True)
            assert found is not None
            if found[0].active:
                repo.revoke_client(t.id, client_id, now)
                ended = repo.revoke_sessions(t.id, now, "OAuth client revoked", client_id=client_id)
                tx.audit(
                    at=now,
                    actor=actor,
                    event="oauth_client.revoked",
                    tenant=t.name,
                    details={"client_id": client_id, "sessions_revoked": len(ended)},
                )
                client = replace(found[0], revoked_at=now)
            else:
                client = found[0]
        return client

    # --- policy ----------------------------------------------------------------------------
    def policy(self, tenant: str) -> SessionPolicy:
        t = self._tenant(tenant)
        with self.store.read() as tx:
            return SessionRepo(tx).policy(t.id)

    def set_policy(self, tenant: str, *, actor: str, **changes: float | None) -> SessionPolicy:
        allowed = {"access_ttl", "idle_ttl", "absolute_ttl", "reuse_grace"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInputError(f"unknown session policy fields: {', '.join(sorted(unknown))}")
        fields = {k: v for k, v in changes.items() if v is not None}
        if not fields:
            raise InvalidInputError("nothing to change: give at least one session policy field")
        t = self._tenant(tenant)
        now = self.clock.now()
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            old = repo.policy(t.id)
            new = replace(old, **fields)  # validated in __post_init__
            repo.set_policy(t.id, new, now)
            tx.audit(
                at=now,
                actor=actor,
                event="session_policy.changed",
                tenant=t.name,
                details={"old": old.to_dict(), "new": new.to_dict()},
            )
        return new

    # --- token endpoint --------------------------------------------------------------------
    def authenticate(self, tenant: str, creds: ClientCredentials) -> OAuthClient:
        """The client these credentials prove, or InvalidClientError (one message for all)."""
        t = self.keys.prepared(tenant).tenant  # TenantNotFoundError for an unknown tenant
        presented = hash_secret(creds.secret) if creds.secret is not None else "0" * 64
        found = None
        if valid_client_id(creds.client_id):
            with self.store.read() as tx:
                found = SessionRepo(tx).client(t.id, t.name, creds.client_id)
        client, stored = found if found is not None else (None, None)
        # Compare even when there is no such client, so timing does not tell ids apart.
        ok = digests_match(presented, stored)
        if client is None or not client.active:
            raise InvalidClientError("client authentication failed")
        if client.confidential:
            # The registered method only (RFC 7591): a client_secret_basic client sending its
            # secret in the body is refused, not silently accepted.
            if creds.method != client.auth_method or creds.secret is None or not ok:
                raise InvalidClientError("client authentication failed")
        elif creds.method != AuthMethod.NONE or creds.secret is not None:
            raise InvalidClientError("client authentication failed")
        return client

    def client_credentials(
        self, tenant: str, client: OAuthClient, scope: str | None
    ) -> TokenResponse:
        if not client.allows(GrantType.CLIENT_CREDENTIALS) or not client.confidential:
            raise UnauthorizedClientError("this client may not use the client_credentials grant")
        granted = self._grant_scope(client.scope, scope)
        p = self.keys.prepare_signing(tenant)
        t = p.tenant
        with self.store.read() as tx:
            policy = SessionRepo(tx).policy(t.id)
        claims: dict[str, Any] = {"sub": client.client_id, "client_id": client.client_id}
        if client.audience is not None:
            claims["aud"] = client.audience
        if granted:
            claims["scope"] = " ".join(granted)
        token, expires_in = self._sign(p, claims, self._access_ttl(policy, t))
        # RFC 6749 section 4.4.3: no refresh token for client credentials; ask again instead.
        return TokenResponse(token, expires_in, scope=granted)

    @staticmethod
    def _grant_scope(allowed: tuple[str, ...], requested: str | None) -> tuple[str, ...]:
        if requested is None:
            return allowed
        try:
            wanted = parse_scope(requested)
        except InvalidInputError as exc:
            raise InvalidScopeError(exc.detail) from None
        extra = set(wanted) - set(allowed)
        if extra:
            raise InvalidScopeError(f"scope not allowed here: {' '.join(sorted(extra))}")
        return wanted

    def refresh(
        self, tenant: str, client: OAuthClient, refresh_token: str, scope: str | None = None
    ) -> TokenResponse:
        """Rotate: retire the presented token, return an access token and its successor.

        A retired token presented again revokes its session (audited) unless it is a retry
        within the policy's grace; refused presentations on a revoked session are audited
        (at most ``MAX_AUDITED_REFUSALS`` per session).
        """
        if not client.allows(GrantType.REFRESH_TOKEN):
            raise UnauthorizedClientError("this client may not use the refresh_token grant")
        if not looks_like_refresh_token(refresh_token):
            raise InvalidGrantError("unknown refresh token")
        p = self.keys.prepare_signing(tenant)
        t = p.tenant
        presented = hash_secret(refresh_token)
        fresh = new_refresh_token()
        now = self.clock.now()
        actor = f"oauth:{client.client_id}"
        refusal: str | None = None
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            found = repo.session_by_token(t.id, t.name, presented)
            if found is None or not digests_match(presented, found[2].token_hash):
                raise InvalidGrantError("unknown refresh token")
            pk, sess, tok, refusals, policy = found
            used_after = tok.used_at is not None and repo.successor_used(pk, tok.generation)
            verdict = judge(
                sess,
                tok,
                client_id=client.client_id,
                now=now,
                policy=policy,
                successor_used=used_after,
            )
            details = {
                "session_id": sess.session_id,
                "subject": sess.subject,
                "client_id": sess.client_id,
                "generation": tok.generation,
            }
            if verdict in (Verdict.ROTATE, Verdict.GRACE):
                granted = self._grant_scope(sess.scope, scope)
                issue = successor(sess, hash_secret(fresh), now, policy)
                repo.rotate(pk, presented, issue.record, now, mark_used=verdict == Verdict.ROTATE)
                if verdict == Verdict.GRACE:
                    tx.audit(
                        at=now,
                        actor=actor,
                        event="session.refresh_retried",
                        tenant=t.name,
                        details=details,
                    )
                claims = self._session_claims(replace(sess, scope=granted))
                # Signed inside the transaction: if signing fails, the rotation rolls back and
                # the client's token still works.
                access, expires_in = self._sign(p, claims, self._access_ttl(policy, t))
                return TokenResponse(
                    access, expires_in, fresh, scope=granted, session_id=sess.session_id
                )
            refusal = REFUSAL_REASONS[verdict]
            if verdict == Verdict.REUSE:
                repo.revoke_sessions(t.id, now, REUSE_REASON, session_id=sess.session_id)
                tx.audit(
                    at=now,
                    actor=actor,
                    event="session.reuse_detected",
                    tenant=t.name,
                    reason=REUSE_REASON,
                    details={**details, "session_generation": sess.generation},
                )
            elif verdict == Verdict.REVOKED and refusals < MAX_AUDITED_REFUSALS:
                repo.count_refusal(pk)
                tx.audit(
                    at=now,
                    actor=actor,
                    event="session.refresh_refused",
                    tenant=t.name,
                    reason=sess.revoked_reason,
                    details=details,
                )
        assert refusal is not None
        raise InvalidGrantError(refusal)

    def revoke_token(
        self, tenant: str, client: OAuthClient, token: str, hint: str | None = None
    ) -> bool:
        """RFC 7009: revoke the session of a refresh token this client holds.

        Returns whether something was revoked. An unknown token, or another client's, is not
        an error (section 2.2: the answer must not tell a prober which tokens exist). Access
        tokens are short JWTs that cannot be recalled one by one: ``unsupported_token_type``.
        """
        if not looks_like_refresh_token(token):
            if token.count(".") == 2 or hint == "access_token":
                raise UnsupportedTokenTypeError(
                    "access tokens cannot be revoked one by one; they expire within the "
                    "session policy's access_ttl (revoke the refresh token to end the session)"
                )
            return False
        t = self.keys.prepared(tenant).tenant
        presented = hash_secret(token)
        now = self.clock.now()
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            found = repo.session_by_token(t.id, t.name, presented)
            if found is None:
                return False
            sess = found[1]
            if sess.client_id != client.client_id or not sess.active:
                return False
            repo.revoke_sessions(t.id, now, "revoked by the client", session_id=sess.session_id)
            tx.audit(
                at=now,
                actor=f"oauth:{client.client_id}",
                event="session.revoked",
                tenant=t.name,
                reason="revoked by the client (RFC 7009)",
                details={"session_id": sess.session_id, "subject": sess.subject},
            )
        return True

    # --- first-party sessions --------------------------------------------------------------
    def open_session(
        self,
        tenant: str,
        *,
        client_id: str,
        subject: str,
        actor: str,
        claims: dict[str, Any] | None = None,
        scope: str | None = None,
    ) -> tuple[Session, TokenResponse]:
        """Open a session for a subject the caller authenticated: an access + refresh token."""
        check_subject(subject)
        claims = check_session_claims(dict(claims or {}))
        if len(orjson.dumps(claims)) > MAX_SESSION_CLAIMS_BYTES:
            raise InvalidInputError(f"claims larger than {MAX_SESSION_CLAIMS_BYTES} bytes")
        p = self.keys.prepare_signing(tenant)
        t = p.tenant
        client, _ = self._client_row(t, client_id)
        if not client.active:
            raise ClientRevokedError(f"OAuth client {client_id} is revoked")
        if not client.allows(GrantType.REFRESH_TOKEN):
            raise InvalidInputError(
                f"OAuth client {client_id} does not allow the refresh_token grant"
            )
        try:
            granted = self._grant_scope(client.scope, scope)
        except InvalidScopeError as exc:
            raise InvalidInputError(exc.detail) from None
        if client.audience is not None and "aud" not in claims:
            claims["aud"] = client.audience
        refresh = new_refresh_token()
        now = self.clock.now()
        with self.store.write() as tx:
            repo = SessionRepo(tx)
            policy = repo.policy(t.id)
            sess = Session(
                session_id=new_session_id(),
                tenant=t.name,
                client_id=client_id,
                subject=subject,
                claims=claims,
                created_at=now,
                absolute_expires_at=now + policy.absolute_ttl,
                last_used_at=None,
                generation=1,
                scope=granted,
            )
            repo.insert_session(
                t.id, sess, first_token(hash_secret(refresh), now, sess.absolute_expires_at, policy)
            )
            tx.audit(
                at=now,
                actor=actor,
                event="session.opened",
                tenant=t.name,
                details={
                    "session_id": sess.session_id,
                    "subject": subject,
                    "client_id": client_id,
                    # Names only: claim values may be personal data.
                    "claims": sorted(claims),
                },
            )
            access, expires_in = self._sign(
                p, self._session_claims(sess), self._access_ttl(policy, t)
            )
        return sess, TokenResponse(
            access, expires_in, refresh, scope=granted, session_id=sess.session_id
        )

    def sessions(
        self,
        tenant: str,
        *,
        subject: str | None = None,
        client_id: str | None = None,
        include_ended: bool = False,
        limit: int = 100,
    ) -> list[Session]:
        if not 1 <= limit <= MAX_SESSIONS_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_SESSIONS_PAGE}")
        if subject is not None:
            check_subject(subject)
        t = self._tenant(tenant)
        with self.store.read() as tx:
            return SessionRepo(tx).sessions(
                t.id,
                t.name,
                subject=subject,
                client_id=client_id,
                include_revoked=include_ended,
                limit=limit,
                now=self.clock.now(),
            )

    def session(self, tenant: str, session_id: str) -> Session:
        t = self._tenant(tenant)
        with self.store.read() as tx:
            sess = SessionRepo(tx).session(t.id, t.name, session_id)
        if sess is None:
            raise SessionNotFoundError(f"tenant {tenant} has no session {session_id!r}")
        return sess

    def revoke_session(
        self, tenant: str, session_id: str, *, actor: str, reason: str | None = None
    ) -> Session:
        reason = check_reason(reason, "revoked")
        self.session(tenant, session_id)  # 404 for an unknown id
        t = self._tenant(tenant)
        now = self.clock.now()
        with self.store.write() as tx:
            ended = SessionRepo(tx).revoke_sessions(t.id, now, reason, session_id=session_id)
            for sid, subject, client_id in ended:
                tx.audit(
                    at=now,
                    actor=actor,
                    event="session.revoked",
                    tenant=t.name,
                    reason=reason,
                    details={"session_id": sid, "subject": subject, "client_id": client_id},
                )
        return self.session(tenant, session_id)

    def revoke_subject(
        self, tenant: str, subject: str, *, actor: str, reason: str | None = None
    ) -> list[str]:
        """Log out everywhere: revoke every active session of ``subject``; their ids."""
        check_subject(subject)
        reason = check_reason(reason, "logged out everywhere")
        t = self._tenant(tenant)
        now = self.clock.now()
        with self.store.write() as tx:
            ended = SessionRepo(tx).revoke_sessions(t.id, now, reason, subject=subject)
            tx.audit(
                at=now,
                actor=actor,
                event="session.subject_revoked",
                tenant=t.name,
                reason=reason,
                details={"subject": subject, "sessions": [sid for sid, _, _ in ended]},
            )
        return [sid for sid, _, _ in ended]

    def purge(self, *, actor: str, keep: float = DEFAULT_PURGE_KEEP) -> int:
        """Delete sessions that ended more than ``keep`` seconds ago (with their tokens)."""
        if not keep >= 0:
            raise InvalidInputError("keep must not be negative")
        now = self.clock.now()
        with self.store.write() as tx:
            count = SessionRepo(tx).purge(now, keep)
            if count:
                tx.audit(
                    at=now,
                    actor=actor,
                    event="session.purged",
                    details={"sessions": count, "ended_before": now - keep},
                )
        return count
