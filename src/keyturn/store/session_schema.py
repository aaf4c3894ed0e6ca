"""Tables of the sessions feature: OAuth clients, session policies, sessions, refresh tokens.

Declared on the shared ``metadata`` (imported at the end of :mod:`keyturn.store.schema`), so
migrations and the schema-drift test see them. Secrets are stored only as SHA-256 digests.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Table, Text

from keyturn.store.schema import metadata

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=True),  # NULL: a public client
    Column("auth_method", String(32), nullable=False),
    Column("grant_types", String(128), nullable=False),  # space-separated
    Column("scope", Text, nullable=False),  # space-separated, may be empty
    Column("audience", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("secret_rotated_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Index("ix_oauth_clients_tenant", "tenant_id"),
)

session_policies = Table(
    "session_policies",
    metadata,
    Column(
        "tenant_id",
        Integer,
        ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("access_ttl", Float, nullable=False),
    Column("idle_ttl", Float, nullable=False),
    Column("absolute_ttl", Float, nullable=False),
    Column("reuse_grace", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), nullable=False, unique=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("claims", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("absolute_expires_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("generation", Integer, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_reason", Text, nullable=True),
    # Refused presentations audited so far: capped, so a replay loop cannot flood the audit.
    Column("refusals_audited", Integer, nullable=False),
    Index("ix_sessions_tenant_subject", "tenant_id", "subject"),
    Index("ix_sessions_tenant_client", "tenant_id", "client_id"),
    Index("ix_sessions_absolute_expires_at", "absolute_expires_at"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("idle_expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Index("ix_refresh_tokens_session_generation", "session", "generation"),
)
