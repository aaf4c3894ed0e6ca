"""The Alembic migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from keyturn.store.schema import metadata
from keyturn.store.sql import SqlStore


def test_migrations_match_metadata(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        diff = compare_metadata(ctx, metadata)
    store.dispose()
    assert diff == []


def test_one_current_key_enforced_by_database(service) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from sqlalchemy import update

    from keyturn.errors import StoreError
    from keyturn.keys.algorithms import Alg
    from keyturn.ring.model import Policy
    from keyturn.store import schema

    service.create_tenant("a", issuer="https://i.example", policy=Policy(alg=Alg.EdDSA), actor="t")
    # The database refuses it; the store reports that as StoreError (statement kind, no values).
    with pytest.raises(StoreError, match="UPDATE keys"), service.store.write() as tx:
        tx.conn.execute(update(schema.keys).values(state="current"))
    _, ring = service.ring("a")
    ring.check_invariants()
