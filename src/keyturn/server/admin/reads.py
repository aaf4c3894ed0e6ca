"""The console's reads beyond a single tenant's ring, all through :class:`KeyService`.

Issue #15: faces do not reach into the store. These were ``service.store`` transactions until
the service grew read methods for them; they stay gathered here so the console's view of the
data has one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyturn.ring.model import KeyRecord
from keyturn.ring.records import AuditRecord, Tenant
from keyturn.service import KeyService


def published_keys(svc: KeyService, tenants: Sequence[Tenant]) -> dict[int, list[KeyRecord]]:
    """Published keys of many tenants in one query (the tenants list's "next rotation")."""
    if not tenants:
        return {}
    return svc.published_keys(list(tenants))


def audit_records(
    svc: KeyService,
    *,
    tenant: str | None = None,
    kid: str | None = None,
    event: str | None = None,
    actor: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditRecord]:
    """Audit records, newest first, older than ``before_id`` (the page cursor)."""
    return svc.audit_records(
        tenant=tenant,
        kid=kid,
        event_name=event,
        actor=actor,
        since=since,
        until=until,
        after_id=before_id,
        limit=limit,
    )


def audit_chain_problems(svc: KeyService) -> list[str]:
    """Every break of the audit hash chains (empty: intact), as ``keyturn audit verify``."""
    return svc.verify_audit_chain()


KEY_MENTION_SCAN = 500  # recent records of the tenant searched for a key named in details


def key_audit(svc: KeyService, tenant: str, kid: str, limit: int = 50) -> list[AuditRecord]:
    """A key's own records, and the recent ones that name it in their details (a rotation is
    recorded on the key that starts signing, with ``previous`` naming the one that stops)."""
    own = audit_records(svc, tenant=tenant, kid=kid, limit=limit)
    recent = audit_records(svc, tenant=tenant, limit=KEY_MENTION_SCAN)
    named = [r for r in recent if r.kid != kid and kid in r.details.values()]
    merged = {r.id: r for r in own + named}
    return sorted(merged.values(), key=lambda r: -r.id)[:limit]
