"""Issue #14 hardening at the store boundary, on SQLite and PostgreSQL: a hung database is a
bounded 503, an out-of-range cursor and NUL characters are invalid input, store errors name the
statement kind and never its values."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from sqlalchemy import insert, text

from keyturn import errors as E
from keyturn.config import Settings
from keyturn.server.app import create_app
from keyturn.service import KeyService
from keyturn.store import schema as s
from keyturn.store.apikeys import ApiKeyStore
from keyturn.store.sql import SqlStore

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio
API = "/api/v1"
TOKEN_PART = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldCJ9"


async def test_audit_cursor_beyond_the_id_range_is_invalid_input(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.get(f"{API}/audit", params={"cursor": "2147483648"}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_input"
    r = await client.get(f"{API}/audit", params={"cursor": "2147483647"}, headers=admin)
    assert r.status_code == 200


async def test_nul_characters_are_invalid_input_everywhere(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        f"{API}/tenants/default/keys/rotate", json={"reason": "leak\u0000ed"}, headers=admin
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input"), r.text
    r = await client.post(
        f"{API}/tenants", json={"name": "nul", "issuer": "https://a.test/\u0000"}, headers=admin
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input"), r.text
    r = await client.get(f"{API}/audit", params={"event": "key.\u0000"}, headers=admin)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input"), r.text
    r = await client.get(f"{API}/tenants", headers=admin)
    assert [t["name"] for t in r.json()] == ["default"]  # nothing was created


def test_store_errors_name_the_statement_kind_not_values(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(E.StoreError) as info:
        with store.write() as tx:
            # NOT NULL columns missing: the database refuses the row.
            tx.conn.execute(insert(s.audit).values(actor=TOKEN_PART, reason=TOKEN_PART))
    assert "INSERT audit" in str(info.value)
    assert TOKEN_PART not in str(info.value)
    assert TOKEN_PART not in caplog.text
    assert "INSERT audit" in caplog.text
    assert info.value.__suppress_context__  # the driver's message is not chained into tracebacks


def test_pool_exhaustion_is_a_bounded_store_unavailable(store: SqlStore) -> None:
    bounded = SqlStore(store.url, pool_timeout=0.3)
    held = [bounded.engine.connect() for _ in range(15)]  # pool_size 5 + max_overflow 10
    try:
        t0 = time.monotonic()
        with pytest.raises(E.StoreUnavailableError, match="no connection free"):
            bounded.tenants()
        assert time.monotonic() - t0 < 3.0
    finally:
        for c in held:
            c.close()
        bounded.dispose()


@pytest.mark.postgres
async def test_hung_database_is_a_503_within_the_lock_timeout(
    ready_service: KeyService, settings: Settings
) -> None:
    if ready_service.store.dialect != "postgresql":
        pytest.skip("a table lock held by another session is a PostgreSQL scenario")
    bounded = SqlStore(ready_service.store.url, statement_timeout=2.0, lock_timeout=0.5)
    svc = KeyService(bounded, ready_service.sealer, ready_service.clock)
    keys = ApiKeyStore(bounded, ready_service.clock)
    token = keys.create("admin", actor="test")[1]
    app = create_app(settings, svc, watchers=[], api_keys=keys)
    blocker = SqlStore(ready_service.store.url)
    conn = blocker.engine.connect()
    try:
        conn.begin()
        conn.execute(text("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
        ) as c:
            t0 = time.monotonic()
            r = await c.get(f"{API}/tenants/default", headers={"Authorization": f"Bearer {token}"})
            elapsed = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "store_unavailable"
            assert elapsed < 5.0
            r = await c.post(
                f"{API}/tenants/default/keys/rotate",
                json={"reason": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
    finally:
        conn.rollback()
        conn.close()
        blocker.dispose()
        bounded.dispose()
