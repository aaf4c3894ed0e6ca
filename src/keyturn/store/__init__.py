"""Persistence: the SQL store (SQLite or PostgreSQL) and its Alembic migrations."""

from keyturn.store.sql import AuditRecord, SqlStore, Tenant, Tx

__all__ = ["AuditRecord", "SqlStore", "Tenant", "Tx"]
