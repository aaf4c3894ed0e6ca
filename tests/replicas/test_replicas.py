"""Several ``keyturn serve`` replicas on one PostgreSQL database behave as one service.

- a due rotation happens exactly once, whichever replicas are up;
- every replica serves a change made through any replica within one second (LISTEN/NOTIFY);
- a replica SIGKILLed inside a rotation leaves a consistent ring; another completes the sweep;
- a database outage: the JWKS and discovery keep being served from memory, signing and
  management answer 503 with a problem body, and everything recovers by itself.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyturn.store.notify import libpq_url
from keyturn.store.sql import NOTIFY_CHANNEL
from tests.conftest import _pg_schema_url
from tests.replicas.harness import PgCluster, Replica, base_env, cli
from tests.tools import skip_or_fail
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FAST = [
    "--rotation-period",
    "2s",
    "--token-ttl",
    "1s",
    "--jwks-max-age",
    "1s",
    "--clock-skew",
    "0s",
]


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    yield from _pg_schema_url(pg_database)


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    env = base_env(tmp_path / "home", pg_url)
    cli(env, "init")
    return env


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for r in started:
        r.stop()


def ring(env: dict[str, str], tenant: str) -> list[dict[str, object]]:
    keys: list[dict[str, object]] = cli(env, "key", "list", "--tenant", tenant, "--all")
    return keys


def assert_consistent(keys: list[dict[str, object]]) -> None:
    states = [k["state"] for k in keys]
    assert states.count("current") == 1, states
    assert states.count("next") <= 1, states
    for k in keys:
        if k["state"] in ("retired", "revoked"):
            assert k["has_private_key"] is False


def listeners(db_url: str, since: float) -> int:
    """Connections to this test's database that are LISTENing (idle after their LISTEN)."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = %s AND backend_start >= to_timestamp(%s)",
            (f"LISTEN {NOTIFY_CHANNEL}", since),
        ).fetchone()
    return int(row[0]) if row else 0


def scheduler_runs(replica: Replica, result: str = "success") -> float:
    """``keyturn_scheduler_runs_total{result=...}`` of one replica (its sweeps so far)."""
    text = httpx.get(f"{replica.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "keyturn_scheduler_runs_total" and sample.labels == {
                "result": result
            }:
                return sample.value
    return 0.0


def rotations(env: dict[str, str], tenant: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = cli(
        env, "audit", "list", "--tenant", tenant, "--event", "key.rotated", "--limit", "1000"
    )
    return found


def jwks_kids(url: str, tenant: str) -> set[str]:
    r = httpx.get(f"{url}/t/{tenant}/.well-known/jwks.json", timeout=5)
    r.raise_for_status()
    return {k["kid"] for k in r.json()["keys"]}


def test_due_rotation_happens_exactly_once_across_three_replicas(
    env: dict[str, str], tmp_path: Path, replicas: list[Replica]
) -> None:
    cli(env, "tenant", "create", "fast", "--alg", "EdDSA", *FAST)
    for i in range(3):
        replicas.append(Replica.start(f"r{i}", env, tmp_path, "--scheduler-interval", "0.2s"))
    # Every replica sweeps (each at least 5 times), and at least 4 periods have been rotated.
    wait_until(
        lambda: all(scheduler_runs(r) >= 5 for r in replicas) and len(rotations(env, "fast")) >= 4,
        bound=60,
        what="4 rotations with 3 replicas sweeping",
    )
    for r in replicas:
        r.stop()
    found = rotations(env, "fast")
    times = sorted(float(r["at"]) for r in found)
    assert len(times) >= 4, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Two replicas rotating the same period would leave a gap near zero.
    assert min(gaps) >= 1.9, gaps
    assert {r["actor"] for r in found} == {"scheduler"}
    assert_consistent(ring(env, "fast"))
    assert cli(env, "audit", "verify")["intact"] is True


def test_a_change_through_one_replica_is_served_by_all_within_a_second(
    env: dict[str, str], tmp_path: Path, replicas: list[Replica], pg_url: str
) -> None:
    started = time.time() - 1  # pg_stat_activity's backend_start has the server's clock
    cli(env, "tenant", "create", "acme", "--alg", "ES256")
    token = cli(env, "apikey", "create", "--role", "admin")["token"]
    # Polling every 30 s: what the test sees within a second is LISTEN/NOTIFY at work.
    for i in range(3):
        replicas.append(
            Replica.start(f"r{i}", env, tmp_path, "--no-scheduler", "--poll-interval", "30s")
        )
    for r in replicas:
        jwks_kids(r.url, "acme")  # warm every replica's cache
    wait_until(lambda: listeners(pg_url, started) >= 3, bound=30, what="3 replicas LISTENing")
    for action in ("rotate", "rotate-and-revoke"):
        body = {} if action == "rotate" else {"reason": "test"}
        res = httpx.post(
            f"{replicas[0].url}/api/v1/tenants/acme/keys/{action}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert res.status_code == 200, res.text
        changed_at = time.monotonic()
        want = {
            k["kid"] for k in ring(env, "acme") if k["state"] in ("next", "current", "previous")
        }
        for r in replicas[1:]:
            while jwks_kids(r.url, "acme") != want:
                assert time.monotonic() - changed_at < 1.0, f"{r.name} still serves the old JWKS"
                time.sleep(0.02)


def test_replica_killed_inside_a_rotation_leaves_a_consistent_ring(
    env: dict[str, str], tmp_path: Path, replicas: list[Replica]
) -> None:
    cli(env, "tenant", "create", "fast", "--alg", "EdDSA", *FAST)
    before = ring(env, "fast")
    marker = tmp_path / "in-transaction"
    faulty = dict(
        env, KEYTURN_TEST_FAULT="sleep:INSERT INTO keys:120", KEYTURN_TEST_FAULT_MARKER=str(marker)
    )
    victim = Replica.start("victim", faulty, tmp_path, "--scheduler-interval", "0.2s")
    replicas.append(victim)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, victim.tail()
        time.sleep(0.05)
    # The victim holds the tenant's row lock with its UPDATEs done and its INSERT pending.
    assert ring(env, "fast") == before  # nothing partial is visible
    survivor = Replica.start("survivor", env, tmp_path, "--scheduler-interval", "0.2s")
    replicas.append(survivor)
    # Three whole sweeps of the survivor, each of which found the tenant due and locked.
    first = scheduler_runs(survivor)
    wait_until(lambda: scheduler_runs(survivor) >= first + 3, bound=30, what="3 survivor sweeps")
    assert ring(env, "fast") == before  # SKIP LOCKED: the survivor leaves the locked tenant alone
    victim.kill()
    deadline = time.monotonic() + 10
    while not cli(env, "audit", "list", "--tenant", "fast", "--event", "key.rotated"):
        assert time.monotonic() < deadline, survivor.tail()
        time.sleep(0.1)
    survivor.stop()
    after = ring(env, "fast")
    assert_consistent(after)
    rotations = cli(
        env, "audit", "list", "--tenant", "fast", "--event", "key.rotated", "--limit", "100"
    )
    assert len(rotations) >= 1
    first = min(rotations, key=lambda r: r["id"])
    old_current = next(k["kid"] for k in before if k["state"] == "current")
    assert first["details"]["previous"] == old_current
    assert cli(env, "audit", "verify")["intact"] is True


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    root = Path(tempfile.mkdtemp(prefix="keyturn-pg-"))
    try:
        c = PgCluster(root)
    except FileNotFoundError as exc:
        skip_or_fail(f"{exc}: apt-get install postgresql")
    c.start()
    try:
        yield c
    finally:
        c.destroy()


def test_database_outage_serves_documents_from_memory_and_recovers(
    cluster: PgCluster, tmp_path: Path, replicas: list[Replica]
) -> None:
    env = base_env(tmp_path / "home", cluster.url)
    cli(env, "init")
    token = cli(env, "apikey", "create", "--role", "admin")["token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = Replica.start(
        "r0", env, tmp_path, "--scheduler-interval", "0.5s", "--poll-interval", "0.2s"
    )
    replicas.append(r)
    with httpx.Client(base_url=r.url, timeout=10) as c:
        jwks = c.get("/.well-known/jwks.json")
        discovery = c.get("/.well-known/openid-configuration")
        assert jwks.status_code == 200 and discovery.status_code == 200
        assert (
            c.post(
                "/api/v1/tenants/default/tokens/sign", json={"claims": {"sub": "a"}}, headers=auth
            ).status_code
            == 200
        )

        cluster.stop()
        # Past the moment the replica noticed: its watcher failed to poll, a sweep failed.
        wait_until(
            lambda: "watcher: cannot poll the store" in r.tail(), bound=30, what="watcher failed"
        )
        wait_until(lambda: scheduler_runs(r, "failure") >= 1, bound=30, what="a failed sweep")
        for _ in range(3):  # repeatedly
            again = c.get("/.well-known/jwks.json")
            assert again.status_code == 200 and again.content == jwks.content
            assert again.headers["etag"] == jwks.headers["etag"]
            assert c.get("/.well-known/openid-configuration").content == discovery.content
        for method, path, body in (
            ("POST", "/api/v1/tenants/default/tokens/sign", {"claims": {"sub": "a"}}),
            ("GET", "/api/v1/tenants", None),
            ("POST", "/api/v1/tenants/default/keys/rotate", {}),
        ):
            res = c.request(method, path, json=body, headers=auth)
            assert res.status_code == 503, (path, res.status_code, res.text)
            assert res.headers["content-type"].startswith("application/problem+json")
            assert res.json()["code"] == "store_unavailable"
            assert "Traceback" not in res.text
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200

        cluster.start()
        deadline = time.monotonic() + 15
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, r.tail()
            time.sleep(0.2)
        res = c.post("/api/v1/tenants/default/keys/rotate", json={}, headers=auth)
        assert res.status_code == 200, res.text
        new = c.get("/.well-known/jwks.json")
        assert new.status_code == 200 and new.headers["etag"] != jwks.headers["etag"]
        assert (
            c.post(
                "/api/v1/tenants/default/tokens/sign", json={"claims": {"sub": "a"}}, headers=auth
            ).status_code
            == 200
        )
