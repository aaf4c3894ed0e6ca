"""The console's reads that :class:`KeyService` does not offer yet, in one place.

Issue #15: faces must not reach into the store. Until the service grows read methods for
these (published keys of many tenants, audit pages, the chain check), this module is the only
part of the console that touches ``service.store``, so switching is a change here alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from keyturn.ring.model import KeyRecord
from keyturn.service import KeyService
from keyturn.store.sql import AuditRecord, Tenant


def published_keys(svc: KeyService, tenants: Sequence[Tenant]) -> dict[int, list[KeyRecord]]:
    """Published keys of many tenants in one query (the tenants list's "next rotation")."""
    if not tenants:
        return {}
    with svc.store.read() as tx:
        return tx.published_keys([t.id for t in tenants])


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
    return svc.store.audit_records(
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
    return svc.store.verify_audit_chain()
