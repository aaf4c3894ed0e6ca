"""Scale: a sweep that rotates N tenants (ES256) on PostgreSQL, and JWKS spread over them.

Set-up bulk-inserts tenants and keys through SQLAlchemy with the store's own schema, each key
made by keyturn's own code path (generate, thumbprint kid, seal, public JWK): creating 100,000
tenants one by one through the service would take longer than the benchmark itself. Every
tenant's current key is back-dated one period so that every tenant is due.

The baseline, in the same run: raw ``cryptography`` ES256 key generation for the same number
of keys.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any

from bench._common import BenchError, Mode, Row, say, scratch_dir

PG_ADMIN_URL = os.environ.get(
    "KEYTURN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PERIOD = 30 * 86400.0
CHUNK = 5000
THREADS = 4
# A key.rotated record's details, as the ring writes them (two RFC 7638 kids and a time).
AUDIT_DETAILS = (
    '{"previous":"' + "p" * 43 + '","next":"' + "n" * 43 + '","retire_after":1800007200.0}'
)


def tenant_name(i: int) -> str:
    return f"t{i:06d}"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A uniquely named database, dropped afterwards whatever happens."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"keyturn_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        raise BenchError(f"cannot create a database on {PG_ADMIN_URL}: {exc.orig}") from None
    say(f"  database {name} created")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        say(f"  database {name} dropped")


def populate(svc: Any, n: int, now: float) -> None:
    """N ES256 tenants, each with a current key due for rotation and a long-published next."""
    from sqlalchemy import insert, select

    from keyturn.keys.algorithms import Alg
    from keyturn.ring.model import KeyState
    from keyturn.store import schema as s
    from keyturn.store.sql import _key_values

    t0 = time.perf_counter()
    for start in range(1, n + 1, CHUNK):
        names = [tenant_name(i) for i in range(start, min(n, start + CHUNK - 1) + 1)]
        tenant_rows = [
            {
                "name": name,
                "issuer": f"https://keyturn.example.com/t/{name}",
                "alg": "ES256",
                "rotation_period": PERIOD,
                "token_ttl": 3600.0,
                "jwks_max_age": 600.0,
                "clock_skew": 60.0,
                "rsa_bits": 2048,
                "policy_forced": False,
                "key_version": 1,
                "created_at": now - 2 * PERIOD,
                "updated_at": now - 2 * PERIOD,
            }
            for name in names
        ]
        key_rows = []
        for name in names:
            # The service's own key path: generate, RFC 7638 kid, seal, public JWK.
            cur = svc._record(name, Alg.ES256, 2048)
            nxt = svc._record(name, Alg.ES256, 2048)
            cur = cur.evolve(
                state=KeyState.CURRENT, created_at=now - 2 * PERIOD, activated_at=now - 2 * PERIOD
            )
            nxt = nxt.evolve(state=KeyState.NEXT, created_at=now - PERIOD)
            key_rows.append((name, _key_values(cur)))
            key_rows.append((name, _key_values(nxt)))
        with svc.store.write() as tx:
            tx.conn.execute(insert(s.tenants), tenant_rows)
            ids = dict(
                tx.conn.execute(
                    select(s.tenants.c.name, s.tenants.c.id).where(s.tenants.c.name.in_(names))
                ).all()
            )
            tx.conn.execute(
                insert(s.keys), [{"tenant_id": ids[name], **vals} for name, vals in key_rows]
            )
        done = min(n, start + CHUNK - 1)
        if done == n or done % 20000 == 0:
            say(f"  populated {done:,} tenants ({time.perf_counter() - t0:.0f} s)")
    # A database that has been serving 100,000 tenants has planner statistics; one bulk-loaded
    # a second ago has none until autovacuum gets to it, and the first sweep then ran at a fifth
    # of the speed of later ones (measured: ~480 vs ~2,300 tenants/s). Measure the former.
    with svc.store.write() as tx:
        tx.conn.exec_driver_sql("ANALYZE")


def make_due(svc: Any, now: float, upto: int | None = None) -> None:
    """Between repeats: retire previous keys, back-date current and next; all due again.

    With ``upto``, only tenants t000001..upto become due (to profile a part).
    """
    from sqlalchemy import select, true, update

    from keyturn.store import schema as s

    k = s.keys.c
    which = (
        k.tenant_id.in_(select(s.tenants.c.id).where(s.tenants.c.name <= tenant_name(upto)))
        if upto is not None
        else true()
    )
    with svc.store.write() as tx:
        tx.conn.execute(
            update(s.keys)
            .where(k.state == "previous")
            .values(state="retired", retired_at=now, sealed_private=None)
        )
        tx.conn.execute(
            update(s.keys)
            .where(k.state == "current", which)
            .values(created_at=now - 2 * PERIOD, activated_at=now - 2 * PERIOD)
        )
        tx.conn.execute(
            update(s.keys).where(k.state == "next", which).values(created_at=now - PERIOD)
        )
        tx.conn.execute(
            update(s.tenants).values(key_version=s.tenants.c.key_version + 1, updated_at=now)
        )
        tx.conn.exec_driver_sql("ANALYZE")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sweep_parallel(svc: Any, threads: int, names: list[str]) -> int:
    """Per-tenant transactions (``sweep_tenant``) from ``threads`` threads."""
    with ThreadPoolExecutor(threads) as ex:
        outcomes = list(ex.map(lambda name: svc.sweep_tenant(name), names))
    return sum(1 for o in outcomes if not o.change.empty)


def database_floor(svc: Any, now: float, shape: dict[str, float]) -> float:
    """Seconds PostgreSQL alone needs to write what one sweep of every due tenant writes.

    The sweep's writes as a handful of set-based statements run entirely inside the server
    (no Python per row, no rows sent over the wire) in one transaction, then rolled back: the
    state changes, one new key row per tenant (copied from an existing one), the sweep's
    audit records (copied from the last ones written, so the sizes match), the key-version
    bump and one NOTIFY per tenant. Any sweep, however written, costs at least this; so
    ``raw keygen time / (keygen time + this)`` bounds the sweep's ratio when key generation
    and the database take turns on one core.
    """
    from sqlalchemy import text

    per_tenant_audit = round(shape["events"])
    retire = shape["updated"] > 2.5
    t = {"now": now, "ret": now + 7200.0}
    with svc.store.engine.connect() as conn:
        tx = conn.begin()
        try:
            t0 = time.perf_counter()
            if retire:
                conn.execute(
                    text(
                        "UPDATE keys SET state = 'retired', retired_at = :now, "
                        "sealed_private = NULL, master_key_id = NULL "
                        "WHERE state = 'previous' AND retire_after <= :now"
                    ),
                    t,
                )
            conn.execute(
                text(
                    "UPDATE keys SET state = 'previous', deactivated_at = :now, "
                    "retire_after = :ret WHERE state = 'current'"
                ),
                t,
            )
            conn.execute(
                text("UPDATE keys SET state = 'current', activated_at = :now WHERE state = 'next'"),
                t,
            )
            conn.execute(
                text(
                    "INSERT INTO keys (tenant_id, kid, alg, state, public_jwk, sealed_private, "
                    "master_key_id, origin, created_at) "
                    "SELECT tenant_id, '~' || kid, alg, 'next', public_jwk, "
                    "sealed_private, master_key_id, origin, :now FROM keys WHERE state = 'current'"
                ),
                t,
            )
            # The audit records, one chain entry per event, of the sweep's sizes.
            conn.execute(
                text(
                    "INSERT INTO audit (at, actor, scope, tenant, kid, event, reason, details, "
                    "prev_hash, hash) "
                    "SELECT :now, 'scheduler', name, name, repeat('k', 43), 'key.rotated', "
                    "NULL, :details, repeat('0', 64), repeat('f', 64) "
                    "FROM tenants, generate_series(1, :per)"
                ),
                {"now": now, "per": per_tenant_audit, "details": AUDIT_DETAILS},
            )
            conn.execute(
                text("UPDATE tenants SET key_version = key_version + 1, updated_at = :now"),
                t,
            )
            conn.execute(text("SELECT count(pg_notify('keyturn_bench_floor', name)) FROM tenants"))
            elapsed = time.perf_counter() - t0
        finally:
            tx.rollback()
    return elapsed


def run_sweep(mode: Mode) -> list[Row]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyturn.keys.algorithms import Alg
    from keyturn.keys.sealing import MasterKey, Sealer
    from keyturn.service import KeyService
    from keyturn.store.sql import SqlStore

    n = mode.tenants
    repeats = min(mode.repeats, 3)
    master = MasterKey.generate()
    rows: list[Row] = []
    with scratch_database() as url:
        store = SqlStore(url)
        try:
            store.migrate()
            svc = KeyService(store, Sealer([master]))
            populate(svc, n, time.time())

            raw_t: list[float] = []
            material_t: list[float] = []
            sweep_t: list[float] = []
            floor_t: list[float] = []
            one_t: list[float] = []
            threads_t: list[float] = []
            curve = ec.SECP256R1()
            names = [tenant_name(i + 1) for i in range(n)]
            # The per-tenant path (one read and one write transaction per tenant, what the
            # scheduler did before the batched sweep) is timed on a sample: at ~150 tenants/s
            # it would take over ten minutes for 100,000.
            sample = min(n // 2, 500 if mode.quick else 2000)

            def raw() -> None:
                for _ in range(n):
                    ec.generate_private_key(curve)

            def material() -> None:
                for name in names:
                    svc._record(name, Alg.ES256, 2048)

            # What one sweep writes per tenant (key updates, audit events), from the sweep
            # itself; the first round's floor assumes a plain rotation until one has run.
            shape = {"updated": 2.0, "events": 1.0}
            for rnd in range(repeats):
                make_due(svc, time.time())
                raw_t.append(timed(raw))
                material_t.append(timed(material))
                # In the due state the sweep is about to see (it rolls back).
                floor_t.append(database_floor(svc, time.time(), shape))
                t0 = time.perf_counter()
                outcomes = svc.sweep()
                sweep_t.append(time.perf_counter() - t0)
                rotated = len(outcomes)
                if rotated != n:
                    raise BenchError(f"sweep rotated {rotated} of {n} tenants")
                shape = {
                    "updated": sum(len(o.change.updated) for o in outcomes) / n,
                    "events": sum(len(o.change.events) for o in outcomes) / n,
                }
                make_due(svc, time.time())
                t0 = time.perf_counter()
                rotated = sum(1 for nm in names[:sample] if not svc.sweep_tenant(nm).change.empty)
                one_t.append((time.perf_counter() - t0) * n / sample)
                t0 = time.perf_counter()
                rotated += sweep_parallel(svc, THREADS, names[sample : 2 * sample])
                threads_t.append((time.perf_counter() - t0) * n / sample)
                if rotated != 2 * sample:
                    raise BenchError(f"per-tenant sweeps rotated {rotated} of {2 * sample}")
                say(
                    f"  round {rnd + 1}: raw keygen {n / raw_t[-1]:,.0f} keys/s, "
                    f"keyturn key material {n / material_t[-1]:,.0f}/s, "
                    f"PostgreSQL floor {n / floor_t[-1]:,.0f} tenants/s, "
                    f"KeyService.sweep {n / sweep_t[-1]:,.0f} tenants/s ({sweep_t[-1]:.1f} s); "
                    f"per tenant {n / one_t[-1]:,.0f}/s, from {THREADS} threads "
                    f"{n / threads_t[-1]:,.0f}/s (sample of {sample})"
                )
            if mode.profile:
                count = min(n, 5000)
                make_due(svc, time.time(), upto=count)
                profile_sweep("KeyService.sweep()", svc.sweep, count)
                make_due(svc, time.time(), upto=min(n, 500))

                def per_tenant() -> None:
                    for nm in names[: min(n, 500)]:
                        svc.sweep_tenant(nm)

                profile_sweep("sweep_tenant one by one", per_tenant, min(n, 500))
            case = f"{n:,} tenants, ES256, PostgreSQL"
            base = Row(
                "sweep", case, "raw cryptography ES256 keygen", "keys/s", [n / t for t in raw_t]
            )
            rows.append(base)
            bound_t = [r + f for r, f in zip(raw_t, floor_t, strict=True)]
            for impl, ts in (
                ("keyturn generate+kid+seal+JWK (no DB)", material_t),
                ("PostgreSQL floor: the sweep's writes, set-based, in-server", floor_t),
                ("bound: raw keygen + PostgreSQL floor, one after the other", bound_t),
                ("KeyService.sweep() (batched)", sweep_t),
                (f"sweep_tenant one by one ({sample}-tenant sample)", one_t),
                (f"sweep_tenant from {THREADS} threads ({sample}-tenant sample)", threads_t),
            ):
                row = Row("sweep", case, impl, "tenants/s", [n / t for t in ts])
                row.baseline = base.impl
                row.ratios = [rt / t for rt, t in zip(raw_t, ts, strict=False)]
                rows.append(row)
            base.baseline, base.ratios = base.impl, [1.0] * len(raw_t)
            rows[4].extra["total"] = f"{median(sweep_t):.1f} s"
        finally:
            store.dispose()
        rows += jwks_spread(url, master.encode(), n, mode)
    return rows


def profile_sweep(title: str, fn: Callable[[], object], count: int) -> None:
    """Where a sweep's time goes: cProfile, summarised by stage, per tenant."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    total = st.total_tt  # type: ignore[attr-defined]
    stats = st.stats  # type: ignore[attr-defined]

    def cum(file_end: str, *funcs: str) -> float:
        # The largest cumulative time among matching functions: the outermost call of each.
        return sum(
            max(
                (
                    v[3]
                    for (f, _ln, fname), v in stats.items()
                    if f.endswith(file_end) and fname == fn_
                ),
                default=0.0,
            )
            for fn_ in funcs
        )

    parts = {
        "key generation (generate_private_key)": cum("keys/generate.py", "generate_private_key"),
        "sealing (Sealer.seal)": cum("keys/sealing.py", "seal"),
        "kid + public JWK (thumbprint, public_jwk)": cum("keys/jwk.py", "thumbprint", "public_jwk"),
        "store: find due tenants": cum("store/sql.py", "due_tenants"),
        "store: lock tenants": cum("store/sql.py", "lock_tenants"),
        "store: read keys": cum("store/sql.py", "published_keys", "keys", "tenant_keys"),
        "store: write changes": cum("store/sql.py", "apply", "apply_many"),
        "store: audit records": cum("store/sql.py", "audit_many", "audit_events"),
        "commit": cum("engine/base.py", "commit"),
        "psycopg execute (all statements)": sum(
            v[3] for (f, _ln, fname), v in stats.items() if "psycopg" in f and fname == "execute"
        ),
    }
    say(f"\n  profile: {title}, {count} tenants: {total / count * 1e3:.3f} ms per tenant")
    for label, secs in parts.items():
        say(f"    {label:<44} {secs / count * 1e3:7.3f} ms  {secs / total:5.0%}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(10)
    for line in out.getvalue().splitlines():
        if line.strip() and (line.lstrip()[0].isdigit() or "ncalls" in line):
            say("    " + line.rstrip())


SPREAD_LUA = """\
local n = {n}
math.randomseed({seed})
request = function()
  return wrk.format("GET", string.format("/t/t%06d/.well-known/jwks.json", math.random(1, n)))
end
"""

DEFAULT_MAX_TENANTS = 10_000  # keyturn serve's default --max-tenants


def warm_up(base_url: str, n: int) -> None:
    """Every tenant's JWKS once (16 at a time), so the measurement sees a warm cache."""
    import httpx

    def fetch(client: httpx.Client, i: int) -> None:
        r = client.get(f"{base_url}/t/{tenant_name(i)}/.well-known/jwks.json")
        if r.status_code != 200:
            raise BenchError(f"JWKS of {tenant_name(i)}: HTTP {r.status_code}")

    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with httpx.Client(limits=limits, timeout=30) as client, ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: fetch(client, i), range(1, n + 1)))


def jwks_spread(url: str, master_key: str, n: int, mode: Mode) -> list[Row]:
    """JWKS requests over all N tenants against one tenant, one worker pinned to core 0.

    Measured after a warm-up pass over every tenant, so the figure is the steady state: with
    the default cache (10,000 tenants) and N above that, most requests still miss; a second
    server with ``--max-tenants N`` shows the all-cached case and its memory.
    """
    from bench._proc import (
        HOST,
        free_port,
        keyturn_env,
        report,
        serve_argv,
        started,
        wait_http,
        wrk,
    )

    scripts = scratch_dir("keyturn-bench-wrk-")
    single, spread = scripts / "single.lua", scripts / "spread.lua"
    single.write_text(SPREAD_LUA.format(n=1, seed=1))
    spread.write_text(SPREAD_LUA.format(n=n, seed=1))
    servers: list[tuple[str, list[str]]] = [("default cache", [])]
    if n > DEFAULT_MAX_TENANTS:
        servers.append((f"--max-tenants {n}", ["--max-tenants", str(n)]))
    rows: list[Row] = []
    case = f"JWKS over HTTP, {n:,} tenants on PostgreSQL"
    for server_label, extra in servers:
        home = scratch_dir("keyturn-bench-home-")
        port = free_port()
        env = keyturn_env(
            home, port, {"KEYTURN_DATABASE_URL": url, "KEYTURN_MASTER_KEY": master_key}
        )
        base_url = f"http://{HOST}:{port}"
        spread_label = f"{n:,} tenants uniform, {server_label}"
        single_label = f"1 tenant, {server_label}"
        results: dict[str, list[Any]] = {single_label: [], spread_label: []}
        rss: dict[str, float] = {}
        with started("keyturn-pg", [*serve_argv(port, cpus="0"), *extra], env=env) as kt:
            wait_http(kt, f"{base_url}/t/{tenant_name(1)}/.well-known/jwks.json", timeout=180)
            rss["start"] = kt.rss_kib() / 1024
            t0 = time.perf_counter()
            warm_up(base_url, n)
            took = time.perf_counter() - t0
            say(
                f"  {server_label}: warm-up pass over {n:,} tenants took {took:.0f} s "
                f"({n / took:,.0f} req/s while filling the cache from PostgreSQL)"
            )
            rss["warm"] = kt.rss_kib() / 1024
            for rnd in range(min(mode.repeats, 3)):
                order = [(single_label, single), (spread_label, spread)]
                if rnd % 2:
                    order.reverse()
                for label, script in order:
                    results[label].append(
                        wrk(base_url + "/", seconds=mode.http_seconds, script=script)
                    )
            rss["end"] = kt.rss_kib() / 1024
        for label, runs in results.items():
            report(label, runs)
        say(
            f"  {server_label}: server RSS " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items())
        )
        single_runs = results[single_label]
        for label, runs in results.items():
            row = Row("sweep", case, label, "req/s", [r.rps for r in runs], baseline=single_label)
            row.ratios = [r.rps / s.rps for r, s in zip(runs, single_runs, strict=False)]
            p99_single = median(r.p99_ms for r in single_runs)
            p99 = median(r.p99_ms for r in runs)
            row.extra = {
                "p50": f"{median(r.p50_ms for r in runs):.2f} ms",
                "p99": f"{p99:.2f} ms",
                "p99 ratio": f"{p99 / p99_single:.2f}",
                "RSS": f"{rss['start']:.0f}->{max(rss.values()):.0f} MiB",
            }
            bad = sum(r.non_2xx_3xx + r.socket_errors for r in runs)
            if bad:
                row.extra["errors"] = bad
            rows.append(row)
    return rows
