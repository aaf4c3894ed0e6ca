"""Persistence: the ``KeyStore`` / ``StoreTx`` Protocols the service is typed against, the SQL
store implementing them (SQLite or PostgreSQL), API keys, LISTEN/NOTIFY and Alembic migrations.

``Tenant`` and ``AuditRecord`` are domain records (``keyturn.ring.records``), re-exported here.
"""

from keyturn.ring.records import AuditRecord, Tenant
from keyturn.store.interface import KeyStore, StoreTx
from keyturn.store.sql import SqlStore, Tx

__all__ = ["AuditRecord", "KeyStore", "SqlStore", "StoreTx", "Tenant", "Tx"]
