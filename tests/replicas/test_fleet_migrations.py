"""Three replicas started at once on a fresh PostgreSQL database migrate it exactly once.

What a Deployment of 3 does on its first rollout. The test holds the store's migration lock
itself while the three ``keyturn serve`` processes start, so all three are provably waiting on
it at the same moment (no luck in the timing); then it lets go. One must migrate, the other two
must wait and start on the migrated schema, and an event trigger records every DDL command so
"exactly once" is counted, not inferred.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from keyturn.keys.sealing import MasterKey
from keyturn.store import sql
from keyturn.store.sql import MIGRATION_LOCK
from tests.conftest import PG_ADMIN_URL
from tests.replicas.harness import KEYTURN, Replica, base_env
from tests.server.live import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DDL_LOG = """
CREATE SCHEMA fleet_audit;
CREATE TABLE fleet_audit.ddl (
    pid int NOT NULL, tag text NOT NULL, object text, at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION fleet_audit.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF r.schema_name IS DISTINCT FROM 'fleet_audit' THEN
      INSERT INTO fleet_audit.ddl (pid, tag, object)
      VALUES (pg_backend_pid(), r.command_tag, r.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER fleet_audit_ddl ON ddl_command_end EXECUTE FUNCTION fleet_audit.log_ddl();
"""


@pytest.fixture
def fresh_db(pg_database: str) -> Iterator[str]:
    """A database of its own (event triggers are database-wide), with the DDL log installed."""
    import psycopg

    name = f"keyturn_fleet_{secrets.token_hex(4)}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            conn.execute(DDL_LOG)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_three_replicas_started_at_once_migrate_a_fresh_database_exactly_once(
    fresh_db: str, tmp_path: Path
) -> None:
    import psycopg

    master_key = MasterKey.generate().encode()  # one key for the fleet, as from a Secret
    holder = psycopg.connect(fresh_db, autocommit=True)
    replicas: list[Replica] = []
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        for i in range(3):
            env = base_env(tmp_path / f"home{i}", fresh_db)
            env["KEYTURN_MASTER_KEY"] = master_key
            port = free_port()
            log_path = tmp_path / f"r{i}.log"
            log = log_path.open("wb")
            proc = subprocess.Popen(
                [*KEYTURN, "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            replicas.append(Replica(f"r{i}", port, proc, log_path, log))

        def waiting() -> int:
            row = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            ).fetchone()
            for r in replicas:
                assert r.proc.poll() is None, r.tail()
            return int(row[0]) if row else 0

        # All three are inside migrate(), blocked on the lock, before any DDL ran.
        _wait_for(lambda: waiting() == 3, 60, "three replicas waiting on the migration lock")
        ddl_before = holder.execute("SELECT count(*) FROM fleet_audit.ddl").fetchone()
        assert ddl_before == (0,)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

        for r in replicas:
            r.wait_ready(60)
        jwks = {httpx.get(f"{r.url}/.well-known/jwks.json", timeout=5).content for r in replicas}
        ddl = holder.execute("SELECT pid, tag, object FROM fleet_audit.ddl").fetchall()
        version = holder.execute("SELECT version_num FROM alembic_version").fetchall()
        tenants = holder.execute("SELECT name FROM tenants").fetchall()
        keys_per_state = dict(
            holder.execute("SELECT state, count(*) FROM keys GROUP BY state").fetchall()
        )
    finally:
        for r in replicas:
            r.stop()
        holder.close()

    # Exactly one backend ran DDL, and it created each table once.
    assert len({pid for pid, _, _ in ddl}) == 1, ddl
    created = [obj for _, tag, obj in ddl if tag == "CREATE TABLE"]
    assert len(created) == len(set(created)), created
    assert created.count("public.alembic_version") == 1
    assert {"public.tenants", "public.keys", "public.audit"} <= set(created)
    assert len(version) == 1  # one row, at head
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(sql.__file__).parent / "migrations"))
    assert version[0][0] == ScriptDirectory.from_config(cfg).get_current_head()
    # The default tenant was created once (the two losers found it), with one ring.
    assert tenants == [("default",)]
    assert keys_per_state == {"current": 1, "next": 1}
    for r in replicas:
        assert r.proc.returncode == 0, r.tail()
        text = r.log_path.read_text(errors="replace")
        assert "Traceback" not in text and '"level":"ERROR"' not in text, text[-3000:]
    # All three served one and the same key set.
    assert len(jwks) == 1
