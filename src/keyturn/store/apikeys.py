"""API keys for the management API: created once, stored hashed, revocable, audited.

A key is shown once as ``kt_<key id>_<secret>``. The secret is 256 random bits, so one SHA-256
is the right hash: a slow password hash defends low-entropy secrets, and this one cannot be
guessed. The key id finds the row; ``hmac.compare_digest`` compares the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, update

from keyturn.clock import Clock, SystemClock
from keyturn.errors import ApiKeyNotFoundError as ApiKeyNotFoundError  # re-exported
from keyturn.errors import InvalidInputError, StoreUnavailableError
from keyturn.ring.model import check_tenant_name
from keyturn.store import schema as s
from keyturn.store.sql import NOTIFY_CHANNEL, SqlStore

PREFIX = "kt"
KEY_ID_BYTES = 8  # 16 hex characters
SECRET_BYTES = 32  # 256 bits
# last_used_at is written at most this often per key: auth must not be a write per request.
TOUCH_INTERVAL = 60.0
MAX_DESCRIPTION = 200
# NOTIFY payloads on the key channel that name an API key, not a tenant (tenant names have no
# colon): ``apikey:<key id>``. Servers drop that key from their in-memory cache at once.
APIKEY_NOTIFY_PREFIX = "apikey:"


class Role(StrEnum):
    """``admin`` may do everything; the others act on one tenant only."""

    ADMIN = "admin"
    MANAGER = "manager"
    SIGNER = "signer"
    VIEWER = "viewer"


@dataclass(frozen=True)
class ApiKey:
    """One API key's public record (never the secret, never its hash)."""

    key_id: str
    role: Role
    tenant: str | None
    description: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role.value,
            "tenant": self.tenant,
            "description": self.description,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(r: Any) -> ApiKey:
    return ApiKey(
        key_id=r.key_id,
        role=Role(r.role),
        tenant=r.tenant,
        description=r.description,
        created_at=r.created_at,
        last_used_at=r.last_used_at,
        revoked_at=r.revoked_at,
    )


_HEX = frozenset("0123456789abcdef")


def hash_secret(secret: str) -> str:
    """The stored form of a secret (hex SHA-256), for in-memory compares."""
    return _hash(secret)


def _notify_key(tx: Any, key_id: str) -> None:
    """Tell every replica this key changed (PostgreSQL NOTIFY, delivered at commit)."""
    if tx.dialect == "postgresql":
        tx.conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, APIKEY_NOTIFY_PREFIX + key_id)))


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) from ``kt_<key id>_<secret>``, None if it is not shaped like one."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != 2 * KEY_ID_BYTES or not _HEX.issuperset(key_id):
        return None
    if not 20 <= len(secret) <= 100:
        return None
    return key_id, secret


class ApiKeyStore:
    """API-key rows in the keyturn database."""

    def __init__(self, store: SqlStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        # Called with a key id after a create or revoke commits here (in-process caches);
        # other processes learn of it through NOTIFY (PostgreSQL) or their cache's re-check.
        self.listeners: list[Callable[[str], None]] = []

    def create(
        self,
        role: Role | str,
        *,
        tenant: str | None = None,
        description: str | None = None,
        actor: str,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns (record, the full token). The token is never stored."""
        try:
            role = Role(role)
        except ValueError:
            raise InvalidInputError(
                f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}"
            ) from None
        if role == Role.ADMIN and tenant is not None:
            raise InvalidInputError("an admin key acts on every tenant: give no --tenant")
        if role != Role.ADMIN:
            if tenant is None:
                raise InvalidInputError(f"a {role.value} key acts on one tenant: give --tenant")
            check_tenant_name(tenant)
            self.store.tenant(tenant)  # raises TenantNotFoundError
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidInputError(f"description longer than {MAX_DESCRIPTION} characters")
        key_id = secrets.token_hex(KEY_ID_BYTES)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        now = self.clock.now()
        with self.store.write() as tx:
            tx.conn.execute(
                insert(s.api_keys).values(
                    key_id=key_id,
                    secret_hash=_hash(secret),
                    role=role.value,
                    tenant=tenant,
                    description=description,
                    created_at=now,
                )
            )
            tx.audit(
                at=now,
                actor=actor,
                event="apikey.created",
                tenant=tenant,
                details={"key_id": key_id, "role": role.value, "description": description},
            )
            _notify_key(tx, key_id)
        rec = ApiKey(key_id, role, tenant, description, now, None, None)
        self._changed(key_id)
        return rec, f"{PREFIX}_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        q = select(s.api_keys).order_by(s.api_keys.c.created_at, s.api_keys.c.id)
        if not include_revoked:
            q = q.where(s.api_keys.c.revoked_at.is_(None))
        with self.store.read() as tx:
            return [_row(r) for r in tx.conn.execute(q)]

    def get(self, key_id: str) -> ApiKey:
        with self.store.read() as tx:
            r = tx.conn.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).first()
        if r is None:
            raise ApiKeyNotFoundError(f"no API key {key_id!r}")
        return _row(r)

    def revoke(self, key_id: str, *, actor: str) -> ApiKey:
        now = self.clock.now()
        with self.store.write() as tx:
            r = tx.conn.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).first()
            if r is None:
                raise ApiKeyNotFoundError(f"no API key {key_id!r}")
            if r.revoked_at is None:
                tx.conn.execute(
                    update(s.api_keys).where(s.api_keys.c.key_id == key_id).values(revoked_at=now)
                )
                tx.audit(
                    at=now,
                    actor=actor,
                    event="apikey.revoked",
                    tenant=r.tenant,
                    details={"key_id": key_id, "role": r.role},
                )
                _notify_key(tx, key_id)
        self._changed(key_id)
        return self.get(key_id)

    def _changed(self, key_id: str) -> None:
        for listener in list(self.listeners):
            listener(key_id)

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """One key's record and stored secret hash (for an in-memory cache), None if unknown."""
        with self.store.read() as tx:
            r = tx.conn.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).first()
        return None if r is None else (_row(r), str(r.secret_hash))

    def record_uses(self, uses: dict[str, float]) -> None:
        """Write ``last_used_at`` for several keys in one transaction (batched bookkeeping)."""
        if not uses:
            return
        with self.store.write() as tx:
            for key_id, at in sorted(uses.items()):
                tx.conn.execute(
                    update(s.api_keys).where(s.api_keys.c.key_id == key_id).values(last_used_at=at)
                )

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key this token proves, or None. Records the use (at most once a minute)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self.store.read() as tx:
            r = tx.conn.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).first()
        # Hash and compare even for an unknown id, so timing does not tell ids apart.
        expected = r.secret_hash if r is not None else "0" * 64
        ok = hmac.compare_digest(_hash(secret), expected)
        if r is None or not ok or r.revoked_at is not None:
            return None
        key = _row(r)
        self._touch(key_id)
        return key

    def _touch(self, key_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_INTERVAL:
                return
            self._touched[key_id] = now
        try:
            with self.store.write() as tx:
                tx.conn.execute(
                    update(s.api_keys).where(s.api_keys.c.key_id == key_id).values(last_used_at=now)
                )
        except StoreUnavailableError:
            # Bookkeeping only: a busy or briefly unreachable store must not fail the request.
            with self._lock:
                self._touched.pop(key_id, None)
