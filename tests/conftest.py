"""Shared fixtures: a ``store`` parametrised over SQLite and PostgreSQL, a service, a clock.

PostgreSQL: the tests create one uniquely named database per run (dropped at the end) and one
schema per test inside it. The server is found at ``KEYTURN_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without it the PostgreSQL cases skip, except in
CI (``CI=true``), where a missing database is a failure, not a skip.

Optional tools (promtool, schemathesis, browsers, ...): ``tests.tools.require_tool(name, hint)``
skips locally with the hint and fails under ``CI=true``; ``skip_or_fail`` for anything else.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from keyturn.clock import FakeClock
from keyturn.keys.sealing import MasterKey, Sealer
from tests.tools import skip_or_fail

PG_ADMIN_URL = os.environ.get(
    "KEYTURN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ENABLE_HINT = (
    "PostgreSQL not reachable at {url} ({err}); start it or set KEYTURN_TEST_POSTGRES_URL="
    "postgresql://USER@HOST:PORT/DB to run the PostgreSQL cases"
)


def _sa_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test run; yields its SQLAlchemy URL; dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        skip_or_fail(ENABLE_HINT.format(url=PG_ADMIN_URL, err=str(exc).splitlines()[0]))
    name = f"keyturn_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        try:
            yield _sa_url(f"{base}/{name}")
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_schema_url(db_url: str) -> Iterator[str]:
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{db_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database URL: an SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'keyturn.db'}"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer([MasterKey.generate()])


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    from keyturn.store.sql import SqlStore

    s = SqlStore(db_url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def service(store, sealer: Sealer, clock: FakeClock):  # type: ignore[no-untyped-def]
    from keyturn.service import KeyService

    return KeyService(store, sealer, clock)
