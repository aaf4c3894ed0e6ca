"""The SQL store (SQLite by default, PostgreSQL by URL): one transaction per key-ring change."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool

from keyturn.errors import (
    ConcurrentChangeError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    TenantExistsError,
    TenantNotFoundError,
)
from keyturn.keys.algorithms import Alg
from keyturn.keys.backends.base import SOFTWARE, BackendSpec
from keyturn.ring.model import PUBLISHED_STATES, KeyRecord, KeyState, Policy
from keyturn.ring.records import AuditAnchor, RotationRow
from keyturn.ring.records import AuditRecord as AuditRecord
from keyturn.ring.records import Tenant as Tenant
from keyturn.ring.ring import Change, Event
from keyturn.store import schema as s

if TYPE_CHECKING:
    from keyturn.clock import Clock
    from keyturn.store.apikeys import ApiKeyStore

GENESIS_HASH = "0" * 64
# Bounded waits on a slow or hung database, all below the ~10 s a client waits for an answer:
# a connection from the pool, one statement, one row lock. Past them the caller gets
# StoreUnavailableError (HTTP 503 store_unavailable), never a request parked for minutes.
POOL_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 8.0
LOCK_TIMEOUT = 4.0
# Largest id an audit cursor may name: the id column is a 32-bit integer on PostgreSQL.
MAX_AUDIT_ID = 2**31 - 1
log = logging.getLogger("keyturn.store")
NOTIFY_CHANNEL = "keyturn_keys"
# Held (transaction-scoped) around the Alembic upgrade on PostgreSQL: when a fleet starts at once
# on a fresh database, one replica migrates and the others wait, then find the schema at head.
MIGRATION_LOCK = 424242
FaultHook = Callable[[str], None]


def _next_rotation_at(keys: Any, tenants: Any) -> Any:
    """``ring.policy_contract.next_rotation_at`` as an SQL expression: activated_at + R."""
    return keys.c.activated_at + tenants.c.rotation_period


def _audit_hash(prev: str, rec: dict[str, Any]) -> str:
    body = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev.encode() + body).hexdigest()


def statement_kind(statement: str | None) -> str:
    """``SELECT``, ``INSERT INTO audit``, ``UPDATE keys``: what a statement is, without values."""
    if not statement:
        return "a statement"
    words = statement.split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    for marker in ("INTO", "UPDATE", "FROM"):
        if marker in upper:
            i = upper.index(marker)
            if i + 1 < len(words):
                return f"{verb} {words[i + 1].strip('()').lower()}"
    return verb


def _refuse_nul(params: Any) -> None:
    """Text with a NUL character is invalid input: PostgreSQL cannot store it (a 500 there),
    SQLite would store a string other tools truncate. Checked on every statement's values, so
    no path into the store is missed."""
    rows = params if isinstance(params, (list, tuple)) else [params]
    for row in rows:
        values = (
            row.values()
            if isinstance(row, dict)
            else row
            if isinstance(row, (list, tuple))
            else [row]
        )
        for v in values:
            if isinstance(v, str) and "\x00" in v:
                raise InvalidInputError("text must not contain NUL characters")


def anchor_hash(heads: dict[str, str]) -> str:
    """One SHA-256 over every scope's last hash (scopes sorted): the audit trail's head."""
    h = hashlib.sha256(b"keyturn audit anchor v1\n")
    for scope in sorted(heads):
        h.update(f"{scope}\t{heads[scope]}\n".encode())
    return h.hexdigest()


def _tenant_from_row(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        name=row.name,
        issuer=row.issuer,
        policy=Policy(
            alg=Alg(row.alg),
            rotation_period=row.rotation_period,
            token_ttl=row.token_ttl,
            jwks_max_age=row.jwks_max_age,
            clock_skew=row.clock_skew,
            rsa_bits=row.rsa_bits,
            auto_rotate=bool(row.auto_rotate),
        ),
        policy_forced=bool(row.policy_forced),
        key_version=row.key_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        key_backend=BackendSpec(row.key_backend, row.key_backend_uri),
    )


def _key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        kid=row.kid,
        alg=Alg(row.alg),
        state=KeyState(row.state),
        public_jwk=orjson.loads(row.public_jwk),
        created_at=row.created_at,
        sealed_private=bytes(row.sealed_private) if row.sealed_private is not None else None,
        master_key_id=row.master_key_id,
        activated_at=row.activated_at,
        deactivated_at=row.deactivated_at,
        retire_after=row.retire_after,
        retired_at=row.retired_at,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        origin=row.origin,
        token_object_id=row.token_object_id,
        token_label=row.token_label,
    )


def _key_values(rec: KeyRecord) -> dict[str, Any]:
    return {
        "kid": rec.kid,
        "alg": rec.alg.value,
        "state": rec.state.value,
        "public_jwk": orjson.dumps(rec.public_jwk).decode(),
        "sealed_private": rec.sealed_private,
        "master_key_id": rec.master_key_id,
        "origin": rec.origin,
        "created_at": rec.created_at,
        "activated_at": rec.activated_at,
        "deactivated_at": rec.deactivated_at,
        "retire_after": rec.retire_after,
        "retired_at": rec.retired_at,
        "revoked_at": rec.revoked_at,
        "revocation_reason": rec.revocation_reason,
        "token_object_id": rec.token_object_id,
        "token_label": rec.token_label,
    }


class Tx:
    """One open write transaction. Methods issue statements; commit happens on context exit."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- tenants -----------------------------------------------------------------------
    def tenant(self, name: str, *, lock: bool = True) -> Tenant:
        q = select(s.tenants).where(s.tenants.c.name == name)
        if lock and self.dialect == "postgresql":
            # Serialises every change to one tenant's ring across replicas; SQLite already
            # holds the database write lock (BEGIN IMMEDIATE).
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        if row is None:
            raise TenantNotFoundError(f"no tenant named {name!r}")
        return _tenant_from_row(row)

    def create_tenant(
        self,
        name: str,
        issuer: str,
        policy: Policy,
        forced: bool,
        now: float,
        key_backend: BackendSpec = SOFTWARE,
    ) -> Tenant:
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(s.tenants).values(
                        name=name,
                        issuer=issuer,
                        alg=policy.alg.value,
                        rotation_period=policy.rotation_period,
                        token_ttl=policy.token_ttl,
                        jwks_max_age=policy.jwks_max_age,
                        clock_skew=policy.clock_skew,
                        rsa_bits=policy.rsa_bits,
                        auto_rotate=policy.auto_rotate,
                        policy_forced=forced,
                        key_version=1,
                        created_at=now,
                        updated_at=now,
                        key_backend=key_backend.kind.value,
                        key_backend_uri=key_backend.uri,
                    )
                )
        except IntegrityError:
            raise TenantExistsError(f"tenant {name!r} already exists") from None
        return self.tenant(name)

    def update_policy(self, tenant: Tenant, policy: Policy, forced: bool, now: float) -> None:
        self.conn.execute(
            update(s.tenants)
            .where(s.tenants.c.id == tenant.id)
            .values(
                alg=policy.alg.value,
                rotation_period=policy.rotation_period,
                token_ttl=policy.token_ttl,
                jwks_max_age=policy.jwks_max_age,
                clock_skew=policy.clock_skew,
                rsa_bits=policy.rsa_bits,
                auto_rotate=policy.auto_rotate,
                policy_forced=forced,
                key_version=s.tenants.c.key_version + 1,
                updated_at=now,
            )
        )
        self.notify(tenant.name)

    def update_issuer(self, tenant: Tenant, issuer: str, now: float) -> None:
        self.conn.execute(
            update(s.tenants)
            .where(s.tenants.c.id == tenant.id)
            .values(issuer=issuer, key_version=s.tenants.c.key_version + 1, updated_at=now)
        )
        self.notify(tenant.name)

    # --- keys --------------------------------------------------------------------------
    def keys(self, tenant: Tenant) -> list[KeyRecord]:
        rows = self.conn.execute(
            select(s.keys).where(s.keys.c.tenant_id == tenant.id).order_by(s.keys.c.id)
        )
        return [_key_from_row(r) for r in rows]

    def apply(self, tenant: Tenant, change: Change, now: float) -> None:
        """Persist a ring change. Updates go first so the partial unique indexes hold."""
        # Demotions before promotions: the one-current/one-next indexes are checked per
        # statement, so the old current must leave 'current' before the next one enters it.
        rank = {
            KeyState.REVOKED: 0,
            KeyState.RETIRED: 0,
            KeyState.PREVIOUS: 1,
            KeyState.NEXT: 2,
            KeyState.CURRENT: 3,
        }
        for rec in sorted(change.updated, key=lambda r: rank[r.state]):
            res = self.conn.execute(
                update(s.keys)
                .where(s.keys.c.tenant_id == tenant.id, s.keys.c.kid == rec.kid)
                .values(**_key_values(rec))
            )
            if res.rowcount != 1:
                raise ConcurrentChangeError(f"key {rec.kid} changed underneath this transaction")
        for rec in sorted(change.created, key=lambda r: rank[r.state]):
            self.conn.execute(insert(s.keys).values(tenant_id=tenant.id, **_key_values(rec)))
        if not change.empty:
            self.conn.execute(
                update(s.tenants)
                .where(s.tenants.c.id == tenant.id)
                .values(key_version=s.tenants.c.key_version + 1, updated_at=now)
            )
            self.notify(tenant.name)

    def reseal(self, tenant_id: int, kid: str, blob: bytes, master_key_id: str) -> None:
        self.conn.execute(
            update(s.keys)
            .where(s.keys.c.tenant_id == tenant_id, s.keys.c.kid == kid)
            .values(sealed_private=blob, master_key_id=master_key_id)
        )

    def sealed_keys(self) -> list[tuple[int, str, str, bytes, str]]:
        """(tenant id, tenant name, kid, blob, master key id) of every key holding private material."""
        q = (
            select(
                s.tenants.c.id,
                s.tenants.c.name,
                s.keys.c.kid,
                s.keys.c.sealed_private,
                s.keys.c.master_key_id,
            )
            .join(s.tenants, s.tenants.c.id == s.keys.c.tenant_id)
            .where(s.keys.c.sealed_private.is_not(None))
            .order_by(s.keys.c.id)
        )
        if self.dialect == "postgresql":
            q = q.with_for_update(of=s.keys)
        return [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in self.conn.execute(q)]

    def notify(self, tenant: str) -> None:
        """Tell other replicas this tenant's keys changed (PostgreSQL NOTIFY, sent on commit)."""
        if self.dialect == "postgresql":
            self.conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, tenant)))

    # --- audit -------------------------------------------------------------------------
    def audit(
        self,
        *,
        at: float,
        actor: str,
        event: str,
        tenant: str | None = None,
        kid: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.audit_many(
            [
                {
                    "at": at,
                    "actor": actor,
                    "scope": tenant or "*",
                    "tenant": tenant,
                    "kid": kid,
                    "event": event,
                    "reason": reason,
                    "details": details or {},
                }
            ]
        )

    def audit_events(
        self, events: list[Event], *, at: float, actor: str, tenant: str, reason: str | None
    ) -> None:
        self.audit_many(
            [
                {
                    "at": at,
                    "actor": actor,
                    "scope": tenant,
                    "tenant": tenant,
                    "kid": ev.kid,
                    "event": ev.event,
                    "reason": reason,
                    "details": ev.details,
                }
                for ev in events
            ]
        )

    def audit_many(self, records: list[dict[str, Any]]) -> None:
        """Append records, each chained to the previous record of its scope (tenant or "*")."""
        if not records:
            return
        scopes = sorted({r["scope"] for r in records})
        if self.dialect == "postgresql":
            # One writer per chain at a time, across replicas; taken in sorted order (to avoid
            # deadlocks) with one statement for the whole batch.
            self.conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(hashtext('keyturn-audit:' || s)) "
                    "FROM (SELECT s FROM unnest(CAST(:scopes AS text[])) AS s ORDER BY s) AS q"
                ),
                {"scopes": scopes},
            )
        last_ids = (
            select(func.max(s.audit.c.id))
            .where(s.audit.c.scope.in_(scopes))
            .group_by(s.audit.c.scope)
            .scalar_subquery()
        )
        heads = dict(
            self.conn.execute(
                select(s.audit.c.scope, s.audit.c.hash).where(s.audit.c.id.in_(last_ids))
            ).all()
        )
        rows = []
        for rec in records:
            prev = heads.get(rec["scope"], GENESIS_HASH)
            digest = _audit_hash(prev, rec)
            heads[rec["scope"]] = digest
            rows.append(
                {
                    **rec,
                    "details": orjson.dumps(rec["details"]).decode(),
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
        self.conn.execute(insert(s.audit), rows)

    # --- bulk sweep --------------------------------------------------------------------
    def due_tenant_ids(self, now: float) -> list[tuple[int, bool]]:
        """Every tenant with a rotation or a retirement due: (id, rotation due), by id.

        One join over the current and previous keys, whatever the number of tenants: asking
        batch by batch re-ran correlated subqueries whose plan, on a freshly loaded table
        without statistics, scanned every key per batch (measured: 100,000 tenants swept at
        ~500/s on the first pass, ~2,400/s once ANALYZE had run).
        """
        t, k = s.tenants, s.keys
        rotating = and_(
            k.c.state == KeyState.CURRENT.value,
            t.c.auto_rotate.is_(True),
            _next_rotation_at(k, t) <= now,
        )
        retiring = and_(k.c.state == KeyState.PREVIOUS.value, k.c.retire_after <= now)
        rot = func.max(case((rotating, 1), else_=0))
        q = (
            select(t.c.id, rot.label("rotation_due"))
            .select_from(t.join(k, k.c.tenant_id == t.c.id))
            .where(or_(rotating, retiring))
            .group_by(t.c.id)
            .order_by(t.c.id)
        )
        return [(r[0], bool(r[1])) for r in self.conn.execute(q)]

    def tenants_by_id(self, ids: list[int]) -> list[Tenant]:
        q = select(s.tenants).where(s.tenants.c.id.in_(ids)).order_by(s.tenants.c.id)
        return [_tenant_from_row(r) for r in self.conn.execute(q)]

    def lock_tenants(self, ids: list[int]) -> list[Tenant]:
        """Lock these tenant rows, skipping any another transaction holds (PostgreSQL)."""
        q = select(s.tenants).where(s.tenants.c.id.in_(ids)).order_by(s.tenants.c.id)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        return [_tenant_from_row(r) for r in self.conn.execute(q)]

    def published_keys(self, tenant_ids: list[int]) -> dict[int, list[KeyRecord]]:
        """Published keys (the only ones transitions read) of many tenants in one query."""
        out: dict[int, list[KeyRecord]] = {i: [] for i in tenant_ids}
        rows = self.conn.execute(
            select(s.keys)
            .where(
                s.keys.c.tenant_id.in_(tenant_ids),
                s.keys.c.state.in_([st.value for st in PUBLISHED_STATES]),
            )
            .order_by(s.keys.c.id)
        )
        for r in rows:
            out[r.tenant_id].append(_key_from_row(r))
        return out

    def apply_many(self, changes: list[tuple[Tenant, Change]], now: float) -> None:
        """Persist many tenants' changes with a handful of bulk statements."""
        rank = {
            KeyState.REVOKED: 0,
            KeyState.RETIRED: 0,
            KeyState.PREVIOUS: 1,
            KeyState.NEXT: 2,
            KeyState.CURRENT: 3,
        }
        changes = [(t, c) for t, c in changes if not c.empty]
        if not changes:
            return
        # Per rank, so the one-current/one-next indexes hold after every statement.
        for level in sorted(set(rank.values())):
            ups = [
                {
                    "_tid": t.id,
                    "_kid": rec.kid,
                    **{"v_" + k: v for k, v in _key_values(rec).items()},
                }
                for t, c in changes
                for rec in c.updated
                if rank[rec.state] == level
            ]
            if ups:
                cols = [name[2:] for name in ups[0] if name.startswith("v_")]
                stmt = (
                    update(s.keys)
                    .where(
                        s.keys.c.tenant_id == bindparam("_tid"), s.keys.c.kid == bindparam("_kid")
                    )
                    .values({col: bindparam("v_" + col) for col in cols})
                )
                self.conn.execute(stmt, ups)
        news = [{"tenant_id": t.id, **_key_values(rec)} for t, c in changes for rec in c.created]
        if news:
            self.conn.execute(insert(s.keys), news)
        self.conn.execute(
            update(s.tenants)
            .where(s.tenants.c.id == bindparam("_tid"))
            .values(key_version=s.tenants.c.key_version + 1, updated_at=bindparam("_now")),
            [{"_tid": t.id, "_now": now} for t, _ in changes],
        )
        if self.dialect == "postgresql":
            # One NOTIFY per tenant, sent with one statement for the batch.
            self.conn.execute(
                text("SELECT pg_notify(:channel, n) FROM unnest(CAST(:names AS text[])) AS n"),
                {"channel": NOTIFY_CHANNEL, "names": [t.name for t, _ in changes]},
            )


class SqlStore:
    """SQLAlchemy 2 store. ``fault_hook(statement)`` runs before every statement (fault injection)."""

    def __init__(
        self,
        url: str,
        *,
        fault_hook: FaultHook | None = None,
        echo: bool = False,
        pool_timeout: float = POOL_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.fault_hook = fault_hook
        self.statement_timeout = statement_timeout
        self.lock_timeout = lock_timeout
        # hide_parameters: a failing statement's values (token parts, reasons, key material)
        # never reach an exception message, so never a log line.
        kwargs: dict[str, Any] = {
            "echo": echo,
            "future": True,
            "hide_parameters": True,
            "pool_timeout": pool_timeout,
        }
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            # A small pool: opening an SQLite connection (and its four PRAGMAs) on every
            # checkout cost more than the query on the server's per-request paths. Pooled
            # connections are safe here: every use is an explicit BEGIN ... COMMIT, and
            # several processes on one file coordinate through SQLite's own locks.
            kwargs["poolclass"] = QueuePool
            kwargs["pool_size"] = 5
            kwargs["max_overflow"] = 10
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 5
            kwargs["max_overflow"] = 10
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            self._sqlite_setup()
        elif self.dialect == "postgresql":
            self._postgres_setup()
        event.listen(self.engine, "before_cursor_execute", self._before_execute)

    def _sqlite_setup(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            # Write transactions take the database lock up front: two processes rotating
            # at once queue here instead of failing later with "database is locked".
            conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    def _postgres_setup(self) -> None:
        statement_ms = max(1, int(self.statement_timeout * 1000))
        lock_ms = max(1, int(self.lock_timeout * 1000))

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # Session defaults of every pooled connection (the URL's own options, e.g. a
            # search_path, stay as they are). Migrations lift the statement timeout locally.
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {statement_ms}")
                cur.execute(f"SET lock_timeout = {lock_ms}")
            dbapi_conn.commit()

    def _before_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        params = args[0] if args else None
        if params:
            _refuse_nul(params)
        if self.fault_hook is not None and not statement.lstrip().upper().startswith(
            ("PRAGMA", "BEGIN")
        ):
            self.fault_hook(statement)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- lifecycle ---------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (safe to run from many replicas)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._wrap(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                if self.dialect == "postgresql":
                    # A migration may rewrite a large table: no statement timeout here.
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                    conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    @contextmanager
    def _wrap(self) -> Iterator[None]:
        """Database errors as keyturn errors, described by the statement's kind and the error's
        class: never the statement's parameter values (nor the driver's message, which may
        quote them)."""
        try:
            yield
        except PoolTimeoutError:
            raise StoreUnavailableError(
                "database unavailable: no connection free in the pool in time"
            ) from None
        except OperationalError as exc:
            kind = statement_kind(exc.statement)
            log.warning("store: %s during %s", type(exc.orig).__name__, kind)
            raise StoreUnavailableError(
                f"database unavailable: {type(exc.orig).__name__} during {kind}"
            ) from None
        except DBAPIError as exc:
            kind = statement_kind(exc.statement)
            if exc.connection_invalidated:
                raise StoreUnavailableError(
                    f"database connection lost during {kind}: {type(exc.orig).__name__}"
                ) from None
            log.error("store: %s during %s", type(exc.orig).__name__, kind)
            raise StoreError(
                f"the database refused a {kind} statement ({type(exc.orig).__name__})"
            ) from None

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed if the block succeeds, rolled back otherwise."""
        with self._wrap(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield Tx(conn, self.dialect)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._wrap(), self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect)

    def api_keys(self, clock: Clock) -> ApiKeyStore:
        """The API-key rows of this database."""
        from keyturn.store.apikeys import ApiKeyStore

        return ApiKeyStore(self, clock)

    def rotation_rows(self, limit: int) -> tuple[list[RotationRow], int]:
        """At most ``limit`` tenants' rotation timing, soonest (most overdue) rotation first, a
        ring without a current key last; and the tenant count.

        One query for all tenants (current and next joined in); a count only at the cap.
        """
        t, cur, nxt = s.tenants, s.keys.alias("cur"), s.keys.alias("nxt")
        due = _next_rotation_at(cur, t)
        rows: list[RotationRow] = []
        with self.read() as tx:
            if limit > 0:
                q = (
                    select(
                        t.c.name,
                        t.c.rotation_period,
                        t.c.jwks_max_age,
                        t.c.clock_skew,
                        cur.c.activated_at,
                        nxt.c.created_at,
                        t.c.auto_rotate,
                    )
                    .select_from(
                        t.outerjoin(
                            cur,
                            and_(cur.c.tenant_id == t.c.id, cur.c.state == KeyState.CURRENT.value),
                        ).outerjoin(
                            nxt, and_(nxt.c.tenant_id == t.c.id, nxt.c.state == KeyState.NEXT.value)
                        )
                    )
                    .order_by(due.is_(None), due, t.c.name)
                    .limit(limit)
                )
                rows = [
                    RotationRow(r[0], float(r[1]), float(r[2]), float(r[3]), r[4], r[5], bool(r[6]))
                    for r in tx.conn.execute(q)
                ]
            total = len(rows)
            if total == limit:
                total = int(tx.conn.execute(select(func.count()).select_from(t)).scalar_one())
        return rows, total

    # --- reads -------------------------------------------------------------------------
    def tenant(self, name: str) -> Tenant:
        with self.read() as tx:
            return tx.tenant(name, lock=False)

    def tenants(self) -> list[Tenant]:
        with self.read() as tx:
            rows = tx.conn.execute(select(s.tenants).order_by(s.tenants.c.name))
            return [_tenant_from_row(r) for r in rows]

    def tenant_keys(self, name: str) -> tuple[Tenant, list[KeyRecord]]:
        with self.read() as tx:
            t = tx.tenant(name, lock=False)
            return t, tx.keys(t)

    def public_keys(self, name: str) -> tuple[Tenant, list[KeyRecord]]:
        """A tenant and the keys its public documents show (published and revoked), without
        private material: what the JWKS cache reads on a miss, so it stays cheap and never
        pulls sealed blobs into the web process's memory."""
        cols = [c for c in s.keys.c if c.name != "sealed_private"]
        shown = [KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS, KeyState.REVOKED]
        with self.read() as tx:
            tenant = tx.tenant(name, lock=False)
            rows = tx.conn.execute(
                select(*cols, null().label("sealed_private"))
                .where(
                    s.keys.c.tenant_id == tenant.id,
                    s.keys.c.state.in_([st.value for st in shown]),
                )
                .order_by(s.keys.c.id)
            )
            return tenant, [_key_from_row(r) for r in rows]

    def key_versions(self, since: float | None = None) -> dict[str, int]:
        """tenant name -> key_version: a cheap poll for replicas without LISTEN/NOTIFY.

        With ``since``, only tenants changed at or after that time (indexed): what a poller
        asks between full passes, so 100,000 tenants do not cost 100,000 rows a poll.
        """
        q = select(s.tenants.c.name, s.tenants.c.key_version)
        if since is not None:
            q = q.where(s.tenants.c.updated_at >= since)
        with self.read() as tx:
            return {r[0]: r[1] for r in tx.conn.execute(q)}

    def audit_records(
        self,
        *,
        tenant: str | None = None,
        kid: str | None = None,
        event_name: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditRecord]:
        q = select(s.audit)
        if tenant is not None:
            q = q.where(s.audit.c.tenant == tenant)
        if kid is not None:
            q = q.where(s.audit.c.kid == kid)
        if event_name is not None:
            q = q.where(s.audit.c.event == event_name)
        if actor is not None:
            q = q.where(s.audit.c.actor == actor)
        if since is not None:
            q = q.where(s.audit.c.at >= since)
        if until is not None:
            q = q.where(s.audit.c.at < until)
        if after_id is not None:
            if not 0 <= after_id <= MAX_AUDIT_ID:
                raise InvalidInputError(f"cursor must be between 0 and {MAX_AUDIT_ID}")
            q = q.where(s.audit.c.id < after_id if newest_first else s.audit.c.id > after_id)
        q = q.order_by(s.audit.c.id.desc() if newest_first else s.audit.c.id).limit(limit)
        with self.read() as tx:
            return [
                AuditRecord(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    scope=r.scope,
                    tenant=r.tenant,
                    kid=r.kid,
                    event=r.event,
                    reason=r.reason,
                    details=orjson.loads(r.details),
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                )
                for r in tx.conn.execute(q)
            ]

    def audit_anchor(self, count: int | None = None) -> AuditAnchor:
        """The anchor after the first ``count`` records in id order (all: ``None``). With fewer
        records than ``count``, the anchor of all of them (its count says how many)."""
        heads: dict[str, str] = {}
        seen = 0
        q = select(s.audit.c.scope, s.audit.c.hash).order_by(s.audit.c.id)
        if count is not None:
            q = q.limit(max(0, count))
        with self.read() as tx:
            for scope, h in tx.conn.execute(q):
                heads[scope] = h
                seen += 1
        return AuditAnchor(seen, anchor_hash(heads))

    def verify_audit_chain(self) -> list[str]:
        """Recompute every hash chain; return a description of each break (empty: intact)."""
        problems: list[str] = []
        last: dict[str, str] = {}
        with self.read() as tx:
            for r in tx.conn.execute(select(s.audit).order_by(s.audit.c.id)):
                prev = last.get(r.scope, GENESIS_HASH)
                rec = {
                    "at": r.at,
                    "actor": r.actor,
                    "scope": r.scope,
                    "tenant": r.tenant,
                    "kid": r.kid,
                    "event": r.event,
                    "reason": r.reason,
                    "details": orjson.loads(r.details),
                }
                if r.prev_hash != prev:
                    problems.append(
                        f"audit record {r.id}: previous hash does not match record before it"
                    )
                if _audit_hash(r.prev_hash, rec) != r.hash:
                    problems.append(f"audit record {r.id}: contents do not match its hash")
                last[r.scope] = r.hash
        return problems
