"""Learn of key changes made by other replicas: PostgreSQL LISTEN/NOTIFY in a background thread.

Every transaction that changes a tenant's keys sends ``NOTIFY keyturn_keys, '<tenant>'``; it is
delivered at commit, so a listener never sees a change that was rolled back. Creating or revoking
an API key sends ``'apikey:<key id>'`` on the same channel (tenant names have no colon), so the
servers' in-memory API-key caches drop that key at once. After a lost
connection the listener reconnects with backoff and reports ``None`` ("anything may have
changed"), because notifications sent while it was away are gone.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from keyturn.store.sql import NOTIFY_CHANNEL

log = logging.getLogger("keyturn.notify")


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` for psycopg itself."""
    head, sep, rest = sqlalchemy_url.partition("://")
    return "postgresql" + sep + rest if head.startswith("postgresql") else sqlalchemy_url


class PgListener:
    """Calls ``on_change(tenant)`` for every NOTIFY, ``on_change(None)`` after a reconnect."""

    def __init__(
        self,
        url: str,
        on_change: Callable[[str | None], None],
        *,
        max_backoff: float = 10.0,
    ) -> None:
        self.url = libpq_url(url)
        self.on_change = on_change
        self.max_backoff = max_backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="keyturn-listen", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        backoff = 0.2
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.connected.set()
                    backoff = 0.2
                    if not first:
                        self.on_change(None)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=100):
                            self.on_change(note.payload or None)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.max_backoff)
