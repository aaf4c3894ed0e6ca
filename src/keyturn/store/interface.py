"""What the service needs of a store, as Protocols: ``KeyStore`` and its transaction ``StoreTx``.

``SqlStore`` (SQLite / PostgreSQL) is the implementation; the service, the scheduler and the
server's watchers are typed against these Protocols, so none of them depends on SQL, and no
code outside ``keyturn.store`` sees a connection.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from keyturn.keys.backends.base import BackendSpec
from keyturn.ring.model import KeyRecord, Policy
from keyturn.ring.records import AuditAnchor, AuditRecord, RotationRow, Tenant
from keyturn.ring.ring import Change, Event

if TYPE_CHECKING:
    from keyturn.clock import Clock
    from keyturn.store.apikeys import ApiKeyStore


class StoreTx(Protocol):
    """One transaction: reads and writes of tenants, keys and the audit chain."""

    def tenant(self, name: str, *, lock: bool = True) -> Tenant: ...

    def create_tenant(
        self,
        name: str,
        issuer: str,
        policy: Policy,
        forced: bool,
        now: float,
        key_backend: BackendSpec = ...,
    ) -> Tenant: ...

    def update_policy(self, tenant: Tenant, policy: Policy, forced: bool, now: float) -> None: ...

    def update_issuer(self, tenant: Tenant, issuer: str, now: float) -> None: ...

    def keys(self, tenant: Tenant) -> list[KeyRecord]: ...

    def apply(self, tenant: Tenant, change: Change, now: float) -> None: ...

    def apply_many(self, changes: list[tuple[Tenant, Change]], now: float) -> None: ...

    def reseal(self, tenant_id: int, kid: str, blob: bytes, master_key_id: str) -> None: ...

    def sealed_keys(self) -> list[tuple[int, str, str, bytes, str]]: ...

    def audit(
        self,
        *,
        at: float,
        actor: str,
        event: str,
        tenant: str | None = None,
        kid: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...

    def audit_events(
        self, events: list[Event], *, at: float, actor: str, tenant: str, reason: str | None
    ) -> None: ...

    def audit_many(self, records: list[dict[str, Any]]) -> None: ...

    def due_tenant_ids(self, now: float) -> list[tuple[int, bool]]: ...

    def tenants_by_id(self, ids: list[int]) -> list[Tenant]: ...

    def lock_tenants(self, ids: list[int]) -> list[Tenant]: ...

    def published_keys(self, tenant_ids: list[int]) -> dict[int, list[KeyRecord]]: ...


class KeyStore(Protocol):
    """A key store: transactions, the reads the faces need, change versions for watchers."""

    url: str
    dialect: str

    def read(self) -> AbstractContextManager[StoreTx]: ...

    def write(self) -> AbstractContextManager[StoreTx]: ...

    def migrate(self) -> None: ...

    def dispose(self) -> None: ...

    def tenant(self, name: str) -> Tenant: ...

    def tenants(self) -> list[Tenant]: ...

    def tenant_keys(self, name: str) -> tuple[Tenant, list[KeyRecord]]: ...

    def public_keys(self, name: str) -> tuple[Tenant, list[KeyRecord]]: ...

    def key_versions(self, since: float | None = None) -> dict[str, int]: ...

    def audit_records(
        self,
        *,
        tenant: str | None = None,
        kid: str | None = None,
        event_name: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditRecord]: ...

    def verify_audit_chain(self) -> list[str]: ...

    def audit_anchor(self, count: int | None = None) -> AuditAnchor: ...

    def rotation_rows(self, limit: int) -> tuple[list[RotationRow], int]: ...

    def api_keys(self, clock: Clock) -> ApiKeyStore: ...


__all__ = ["KeyStore", "StoreTx"]
