"""Tables (SQLAlchemy Core). Times are UTC epoch seconds as floats, portable across databases."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("issuer", String(2048), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("rotation_period", Float, nullable=False),
    Column("token_ttl", Float, nullable=False),
    Column("jwks_max_age", Float, nullable=False),
    Column("clock_skew", Float, nullable=False),
    Column("rsa_bits", Integer, nullable=False),
    # Off: the scheduler never rotates this tenant (manual rotation); retirements still run.
    Column("auto_rotate", Boolean, nullable=False, default=True, server_default=true()),
    Column("policy_forced", Boolean, nullable=False, default=False),
    # Where private keys live: "software" (sealed rows) or "pkcs11" with a token URI (no PIN).
    Column("key_backend", String(16), nullable=False, server_default="software"),
    Column("key_backend_uri", String(1024), nullable=True),
    # Bumped in every transaction that changes the published key set: replicas compare it.
    Column("key_version", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tenants_updated_at", "updated_at"),
)

keys = Table(
    "keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("kid", String(128), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("sealed_private", LargeBinary, nullable=True),
    Column("master_key_id", String(64), nullable=True),
    Column("origin", String(16), nullable=False),
    # A token-backed key: its CKA_ID (hex) and CKA_LABEL. Never key material.
    Column("token_object_id", String(64), nullable=True),
    Column("token_label", String(255), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("activated_at", Float, nullable=True),
    Column("deactivated_at", Float, nullable=True),
    Column("retire_after", Float, nullable=True),
    Column("retired_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("revocation_reason", Text, nullable=True),
    UniqueConstraint("tenant_id", "kid", name="uq_keys_tenant_kid"),
    # The database itself enforces "exactly one current, at most one next" per tenant.
    Index(
        "uq_keys_one_current",
        "tenant_id",
        unique=True,
        sqlite_where=text("state = 'current'"),
        postgresql_where=text("state = 'current'"),
    ),
    Index(
        "uq_keys_one_next",
        "tenant_id",
        unique=True,
        sqlite_where=text("state = 'next'"),
        postgresql_where=text("state = 'next'"),
    ),
    Index("ix_keys_state_retire", "state", "retire_after"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("scope", String(64), nullable=False),  # tenant name, or "*" for global events
    Column("tenant", String(63), nullable=True),
    Column("kid", String(128), nullable=True),
    Column("event", String(64), nullable=False),
    Column("reason", Text, nullable=True),
    Column("details", Text, nullable=False),
    # Hash chain per scope: each record's hash covers the previous one (tamper evidence).
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_tenant_at", "tenant", "at"),
    Index("ix_audit_scope_id", "scope", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("tenant", String(63), nullable=True),
    Column("description", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

# The sessions feature's tables, on this same metadata (migrations and drift checks see them).
from keyturn.store import session_schema as _session_schema  # noqa: E402, F401
