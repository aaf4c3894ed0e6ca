"""API keys in memory for the signing fast path: no database round trip per request.

A key's record and stored secret hash are read once and trusted for ``revalidate_after``
seconds (the service's own bound for prepared signers, 0.25 s), then read again; a key seen
to change is dropped at once: ``invalidate(key_id)`` is called by the local
:class:`~keyturn.store.apikeys.ApiKeyStore` after a create or revoke, and by the server's
watchers on a ``NOTIFY keyturn_keys, 'apikey:<key id>'`` from another replica (PostgreSQL).
A revoked or re-scoped key thus stops working within the same bound as a key change: at
once in this process and on PostgreSQL replicas, within ``revalidate_after`` everywhere else.

The secret is compared as its SHA-256 with ``hmac.compare_digest``, for unknown key ids too
(against a dummy hash), so timing tells neither ids nor secrets apart. ``last_used_at`` is
recorded off the request path: :class:`UsageRecorder` batches the writes in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass

from keyturn.clock import ServiceClock
from keyturn.service import DEFAULT_REVALIDATE_AFTER
from keyturn.store.apikeys import TOUCH_INTERVAL, ApiKey, ApiKeyStore

log = logging.getLogger("keyturn.server.keycache")

DEFAULT_MAX_ENTRIES = 10_000
_DUMMY_HASH = b"0" * 64
IDLE_EXIT = 5.0  # seconds the usage thread waits for work before it ends (restarted on demand)


@dataclass(frozen=True, slots=True)
class CachedKey:
    """One key id as last read: its record and hash, or ``None`` for an unknown id."""

    key: ApiKey | None
    secret_hash: bytes
    checked: float  # the clock's monotonic time of the read


class ApiKeyCache:
    """Key id -> (record, hash), re-read after ``revalidate_after`` seconds, dropped on change."""

    def __init__(
        self,
        keys: ApiKeyStore,
        clock: ServiceClock,
        *,
        revalidate_after: float = DEFAULT_REVALIDATE_AFTER,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        usage: UsageRecorder | None = None,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.revalidate_after = revalidate_after
        self.max_entries = max_entries
        self.usage = usage if usage is not None else UsageRecorder(keys, clock)
        self.loads = 0  # store reads made (tests and the bench read it)
        self._entries: dict[str, CachedKey] = {}
        self._generation = 0
        self._lock = threading.Lock()
        keys.listeners.append(self.invalidate)

    def peek(self, key_id: str) -> CachedKey | None:
        """The entry if it is still trusted (no store access), else None: call :meth:`load`."""
        entry = self._entries.get(key_id)
        if entry is None or self.clock.monotonic() - entry.checked >= self.revalidate_after:
            return None
        return entry

    def load(self, key_id: str) -> CachedKey:
        """Read the key from the store (blocking: not on the event loop) and cache it."""
        with self._lock:
            generation = self._generation
        checked = self.clock.monotonic()
        found = self.keys.lookup(key_id)
        self.loads += 1
        if found is None:
            entry = CachedKey(None, _DUMMY_HASH, checked)
        else:
            entry = CachedKey(found[0], found[1].encode(), checked)
        with self._lock:
            # An invalidation that arrived during the read may be newer than what was read.
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    # Unknown ids go first: a spray of random kt_ ids must not push the real
                    # keys out (every real client would then pay a store read again).
                    known = {k: e for k, e in self._entries.items() if e.key is not None}
                    self._entries = known if len(known) < self.max_entries else {}
                self._entries[key_id] = entry
        return entry

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget one key (None: every key), e.g. on revoke or a role change."""
        with self._lock:
            self._generation += 1
            if key_id is None:
                self._entries.clear()
            else:
                self._entries.pop(key_id, None)

    @staticmethod
    def check(entry: CachedKey, secret: str) -> ApiKey | None:
        """The active key this secret proves, else None (constant-time compare of the hash)."""
        ok = hmac.compare_digest(
            hashlib.sha256(secret.encode()).hexdigest().encode(), entry.secret_hash
        )
        key = entry.key
        if not ok or key is None or key.revoked_at is not None:
            return None
        return key


class UsageRecorder:
    """``last_used_at`` off the request path: at most one write per key per ``interval``,
    written by a background thread in one transaction per batch."""

    def __init__(
        self, keys: ApiKeyStore, clock: ServiceClock, *, interval: float = TOUCH_INTERVAL
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.interval = interval
        self._written: dict[str, float] = {}
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, key_id: str) -> None:
        """Note a use (a dict look-up in the common case; never a store access)."""
        now = self.clock.now()
        last = self._written.get(key_id)
        if last is not None and now - last < self.interval:
            return
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < self.interval:
                return
            self._written[key_id] = now
            self._pending[key_id] = now
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="keyturn-apikey-usage", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def flush(self) -> int:
        """Write what is pending now, in the caller's thread; returns the keys written."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            self.keys.record_uses(batch)
        except Exception as exc:
            # Bookkeeping only: a busy store must not fail anything; try again at the next use.
            log.warning("cannot record API key use: %s", exc)
            with self._lock:
                for key_id in batch:
                    self._written.pop(key_id, None)
            return 0
        return len(batch)

    def _run(self) -> None:
        while True:
            woke = self._wake.wait(IDLE_EXIT)
            self._wake.clear()
            self.flush()
            with self._lock:
                if self._closed or (not woke and not self._pending):
                    self._thread = None
                    return

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and write what is pending."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self.flush()
