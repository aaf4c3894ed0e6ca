"""Session rows: OAuth clients, session policies, sessions and refresh-token digests.

:class:`SessionRepo` wraps one open transaction of the SQL store (the service sees it as a
``StoreTx``, audits through it, and never touches its connection); the service opens the
transaction, decides with the pure domain, and writes through here. Refresh tokens are
found by their SHA-256 digest (the primary key); plaintext never reaches this module.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from keyturn.errors import ConflictError
from keyturn.sessions.model import (
    AuthMethod,
    GrantType,
    OAuthClient,
    RefreshTokenRecord,
    Session,
    SessionPolicy,
)
from keyturn.store import session_schema as ss
from keyturn.store.interface import StoreTx
from keyturn.store.sql import Tx

# Used tokens of a session kept for reuse detection: the newest this many generations. An
# older replayed token is simply unknown (invalid_grant) rather than a detected reuse; this
# keeps a long-lived session's rows bounded whatever its refresh rate.
KEEP_GENERATIONS = 64


def _client(r: Any, tenant: str) -> OAuthClient:
    return OAuthClient(
        client_id=r.client_id,
        tenant=tenant,
        auth_method=AuthMethod(r.auth_method),
        grant_types=tuple(GrantType(g) for g in r.grant_types.split()),
        scope=tuple(r.scope.split()),
        audience=r.audience,
        description=r.description,
        created_at=r.created_at,
        secret_rotated_at=r.secret_rotated_at,
        revoked_at=r.revoked_at,
    )


def _session(r: Any, tenant: str) -> Session:
    return Session(
        session_id=r.session_id,
        tenant=tenant,
        client_id=r.client_id,
        subject=r.subject,
        claims=orjson.loads(r.claims),
        created_at=r.created_at,
        absolute_expires_at=r.absolute_expires_at,
        last_used_at=r.last_used_at,
        generation=r.generation,
        revoked_at=r.revoked_at,
        revoked_reason=r.revoked_reason,
        scope=tuple(r.scope.split()),
    )


class SessionRepo:
    """Statements of the sessions feature inside one transaction."""

    def __init__(self, tx: StoreTx) -> None:
        # The service holds the store by its Protocol; the rows here live in the SQL store.
        if not isinstance(tx, Tx):
            raise TypeError("sessions are stored in the SQL store")
        self.tx = tx
        self.conn = tx.conn

    def _lock(self, q: Any) -> Any:
        # PostgreSQL: row locks serialise concurrent refreshes of one session across
        # replicas; SQLite write transactions already hold the database lock.
        return q.with_for_update() if self.tx.dialect == "postgresql" else q

    # --- clients ---------------------------------------------------------------------------
    def insert_client(self, tenant_id: int, c: OAuthClient, secret_hash: str | None) -> None:
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(ss.oauth_clients).values(
                        tenant_id=tenant_id,
                        client_id=c.client_id,
                        secret_hash=secret_hash,
                        auth_method=c.auth_method.value,
                        grant_types=" ".join(g.value for g in c.grant_types),
                        scope=" ".join(c.scope),
                        audience=c.audience,
                        description=c.description,
                        created_at=c.created_at,
                    )
                )
        except IntegrityError:
            raise ConflictError("client id collision; try again") from None

    def client(
        self, tenant_id: int, tenant: str, client_id: str, *, lock: bool = False
    ) -> tuple[OAuthClient, str | None] | None:
        """(client, secret digest), or None when the tenant has no such client."""
        q = select(ss.oauth_clients).where(
            ss.oauth_clients.c.client_id == client_id, ss.oauth_clients.c.tenant_id == tenant_id
        )
        r = self.conn.execute(self._lock(q) if lock else q).first()
        if r is None:
            return None
        return _client(r, tenant), r.secret_hash

    def clients(self, tenant_id: int, tenant: str, *, include_revoked: bool) -> list[OAuthClient]:
        q = select(ss.oauth_clients).where(ss.oauth_clients.c.tenant_id == tenant_id)
        if not include_revoked:
            q = q.where(ss.oauth_clients.c.revoked_at.is_(None))
        q = q.order_by(ss.oauth_clients.c.created_at, ss.oauth_clients.c.id)
        return [_client(r, tenant) for r in self.conn.execute(q)]

    def set_secret(self, tenant_id: int, client_id: str, secret_hash: str, now: float) -> None:
        self.conn.execute(
            update(ss.oauth_clients)
            .where(
                ss.oauth_clients.c.client_id == client_id,
                ss.oauth_clients.c.tenant_id == tenant_id,
            )
            .values(secret_hash=secret_hash, secret_rotated_at=now)
        )

    def revoke_client(self, tenant_id: int, client_id: str, now: float) -> None:
        self.conn.execute(
            update(ss.oauth_clients)
            .where(
                ss.oauth_clients.c.client_id == client_id,
                ss.oauth_clients.c.tenant_id == tenant_id,
            )
            .values(revoked_at=now)
        )

    # --- policy ----------------------------------------------------------------------------
    def policy(self, tenant_id: int) -> SessionPolicy:
        r = self.conn.execute(
            select(ss.session_policies).where(ss.session_policies.c.tenant_id == tenant_id)
        ).first()
        if r is None:
            return SessionPolicy()
        return SessionPolicy(
            access_ttl=r.access_ttl,
            idle_ttl=r.idle_ttl,
            absolute_ttl=r.absolute_ttl,
            reuse_grace=r.reuse_grace,
        )

    def set_policy(self, tenant_id: int, policy: SessionPolicy, now: float) -> None:
        values = {**policy.to_dict(), "updated_at": now}
        res = self.conn.execute(
            update(ss.session_policies)
            .where(ss.session_policies.c.tenant_id == tenant_id)
            .values(**values)
        )
        if res.rowcount == 0:
            self.conn.execute(insert(ss.session_policies).values(tenant_id=tenant_id, **values))

    # --- sessions --------------------------------------------------------------------------
    def insert_session(self, tenant_id: int, sess: Session, first: RefreshTokenRecord) -> None:
        res = self.conn.execute(
            insert(ss.sessions).values(
                session_id=sess.session_id,
                tenant_id=tenant_id,
                client_id=sess.client_id,
                subject=sess.subject,
                claims=orjson.dumps(sess.claims).decode(),
                scope=" ".join(sess.scope),
                created_at=sess.created_at,
                absolute_expires_at=sess.absolute_expires_at,
                last_used_at=None,
                generation=first.generation,
                refusals_audited=0,
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        self._insert_token(int(pk[0]), first)

    def _insert_token(self, session_pk: int, t: RefreshTokenRecord) -> None:
        self.conn.execute(
            insert(ss.refresh_tokens).values(
                token_hash=t.token_hash,
                session=session_pk,
                generation=t.generation,
                issued_at=t.issued_at,
                idle_expires_at=t.idle_expires_at,
                used_at=t.used_at,
            )
        )

    def session_by_token(
        self, tenant_id: int, tenant: str, token_hash: str
    ) -> tuple[int, Session, RefreshTokenRecord, int, SessionPolicy] | None:
        """(session pk, session, token, refusals audited, the tenant's policy) for a token
        digest, in one statement; None when this tenant has no such token.

        On PostgreSQL the session and token rows are locked (``FOR UPDATE OF`` both): a
        concurrent refresh of the same session waits, and then sees the rows as that one left
        them (READ COMMITTED re-reads locked rows), so a token it used reads as used.
        """
        s, t, p = ss.sessions.c, ss.refresh_tokens.c, ss.session_policies.c
        q = (
            select(
                ss.sessions,
                t.token_hash,
                t.generation.label("t_generation"),
                t.issued_at.label("t_issued_at"),
                t.idle_expires_at.label("t_idle_expires_at"),
                t.used_at.label("t_used_at"),
                p.access_ttl,
                p.idle_ttl,
                p.absolute_ttl,
                p.reuse_grace,
            )
            .select_from(
                ss.refresh_tokens.join(ss.sessions, s.id == t.session).outerjoin(
                    ss.session_policies, p.tenant_id == s.tenant_id
                )
            )
            .where(t.token_hash == token_hash, s.tenant_id == tenant_id)
        )
        if self.tx.dialect == "postgresql":
            q = q.with_for_update(of=[ss.sessions, ss.refresh_tokens])
        r = self.conn.execute(q).first()
        if r is None:
            return None  # unknown, or another tenant's token: unknown here
        token = RefreshTokenRecord(
            token_hash=r.token_hash,
            generation=r.t_generation,
            issued_at=r.t_issued_at,
            idle_expires_at=r.t_idle_expires_at,
            used_at=r.t_used_at,
        )
        policy = (
            SessionPolicy()
            if r.access_ttl is None
            else SessionPolicy(
                access_ttl=r.access_ttl,
                idle_ttl=r.idle_ttl,
                absolute_ttl=r.absolute_ttl,
                reuse_grace=r.reuse_grace,
            )
        )
        return int(r.id), _session(r, tenant), token, int(r.refusals_audited), policy

    def successor_used(self, session_pk: int, generation: int) -> bool:
        q = select(func.count()).where(
            ss.refresh_tokens.c.session == session_pk,
            ss.refresh_tokens.c.generation > generation,
            ss.refresh_tokens.c.used_at.is_not(None),
        )
        return bool(self.conn.execute(q).scalar())

    def rotate(
        self,
        session_pk: int,
        used_hash: str,
        new: RefreshTokenRecord,
        now: float,
        *,
        mark_used: bool,
    ) -> None:
        """Retire the presented token (unless a grace retry: it is retired already), insert the
        successor, advance the session; trim old generations now and then."""
        if mark_used:
            self.conn.execute(
                update(ss.refresh_tokens)
                .where(ss.refresh_tokens.c.token_hash == used_hash)
                .values(used_at=now)
            )
        self._insert_token(session_pk, new)
        self.conn.execute(
            update(ss.sessions)
            .where(ss.sessions.c.id == session_pk)
            .values(generation=new.generation, last_used_at=now)
        )
        if new.generation % 16 == 0 and new.generation > KEEP_GENERATIONS:
            self.conn.execute(
                delete(ss.refresh_tokens).where(
                    ss.refresh_tokens.c.session == session_pk,
                    ss.refresh_tokens.c.generation <= new.generation - KEEP_GENERATIONS,
                )
            )

    def count_refusal(self, session_pk: int) -> None:
        self.conn.execute(
            update(ss.sessions)
            .where(ss.sessions.c.id == session_pk)
            .values(refusals_audited=ss.sessions.c.refusals_audited + 1)
        )

    def revoke_sessions(
        self,
        tenant_id: int,
        now: float,
        reason: str,
        *,
        session_id: str | None = None,
        subject: str | None = None,
        client_id: str | None = None,
    ) -> list[tuple[str, str, str]]:
        """Revoke the tenant's active sessions matching every filter given:
        [(session id, subject, client id)]."""
        c = ss.sessions.c
        q = select(c.id, c.session_id, c.subject, c.client_id).where(
            c.tenant_id == tenant_id, c.revoked_at.is_(None)
        )
        if session_id is not None:
            q = q.where(c.session_id == session_id)
        if subject is not None:
            q = q.where(c.subject == subject)
        if client_id is not None:
            q = q.where(c.client_id == client_id)
        rows = self.conn.execute(self._lock(q)).all()
        if rows:
            self.conn.execute(
                update(ss.sessions)
                .where(c.id.in_([r[0] for r in rows]))
                .values(revoked_at=now, revoked_reason=reason)
            )
        return [(r[1], r[2], r[3]) for r in rows]

    def session(self, tenant_id: int, tenant: str, session_id: str) -> Session | None:
        r = self.conn.execute(
            select(ss.sessions).where(
                ss.sessions.c.session_id == session_id, ss.sessions.c.tenant_id == tenant_id
            )
        ).first()
        return _session(r, tenant) if r is not None else None

    def sessions(
        self,
        tenant_id: int,
        tenant: str,
        *,
        subject: str | None,
        client_id: str | None,
        include_revoked: bool,
        limit: int,
        now: float,
    ) -> list[Session]:
        q = select(ss.sessions).where(ss.sessions.c.tenant_id == tenant_id)
        if subject is not None:
            q = q.where(ss.sessions.c.subject == subject)
        if client_id is not None:
            q = q.where(ss.sessions.c.client_id == client_id)
        if not include_revoked:
            q = q.where(ss.sessions.c.revoked_at.is_(None), ss.sessions.c.absolute_expires_at > now)
        q = q.order_by(ss.sessions.c.id.desc()).limit(limit)
        return [_session(r, tenant) for r in self.conn.execute(q)]

    def purge(self, now: float, keep: float) -> int:
        """Delete sessions that ended (expired or revoked) more than ``keep`` seconds ago."""
        cutoff = now - keep
        ended = and_(
            ss.sessions.c.absolute_expires_at < cutoff,
        ) | and_(ss.sessions.c.revoked_at.is_not(None), ss.sessions.c.revoked_at < cutoff)
        ids = [r[0] for r in self.conn.execute(select(ss.sessions.c.id).where(ended))]
        if not ids:
            return 0
        self.conn.execute(delete(ss.refresh_tokens).where(ss.refresh_tokens.c.session.in_(ids)))
        self.conn.execute(delete(ss.sessions).where(ss.sessions.c.id.in_(ids)))
        return len(ids)


__all__ = ["KEEP_GENERATIONS", "SessionRepo"]
