"""Watchers: learn of key changes committed by other processes (CLI, replicas, scheduler).

A watcher calls ``notify(tenant)`` for every tenant whose keys may have changed, or
``notify(None)`` when anything may have changed; the server invalidates its cached documents
and pushes revocations. ``PollingWatcher`` compares ``store.key_versions()`` every interval and
works on every database. On PostgreSQL, ``ListenWatcher`` (LISTEN/NOTIFY, delivered at commit)
runs beside it: changes arrive in milliseconds, and the poll only heals what a lost listener
connection missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from keyturn.store.interface import KeyStore
from keyturn.store.notify import PgListener

log = logging.getLogger("keyturn.server.watch")

DEFAULT_POLL_INTERVAL = 0.5
FULL_POLL_EVERY = 30.0  # seconds between full passes (catches anything a window could miss)
CHANGE_WINDOW = 60.0  # seconds an incremental poll reaches back (clock skew between writers)
Notify = Callable[[str | None], None]


class Watcher(Protocol):
    """Something that reports changed tenants until stopped."""

    def start(self, notify: Notify) -> None: ...

    def stop(self) -> None: ...


def changed_tenants(old: dict[str, int], new: dict[str, int]) -> list[str]:
    """Tenants added, removed, or with another key_version."""
    return sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))


class PollingWatcher:
    """Polls ``store.key_versions()`` (one small query) in a daemon thread."""

    def __init__(
        self,
        store: KeyStore,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        cached: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """``cached()`` returns the key_version of each cached tenant: compared too, so an
        entry that raced a change (rendered from an older version) is healed at the next poll.
        """
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.interval = interval
        self.cached = cached
        self.polls = 0
        self.last_error: Exception | None = None
        self._versions: dict[str, int] | None = None
        self._last_full = 0.0
        self._last_poll = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _fetch(self) -> dict[str, int]:
        """All versions on a full pass; between them only tenants changed lately (indexed).

        ``updated_at`` is written with the writer's clock, so the window reaches back
        ``CHANGE_WINDOW`` seconds before the previous poll to cover skew between replicas.
        """
        started = time.time()
        full = (
            self._versions is None
            or self.last_error is not None
            or started - self._last_full >= FULL_POLL_EVERY
        )
        if full:
            versions = self.store.key_versions()
            self._last_full = started
        else:
            assert self._versions is not None
            versions = dict(self._versions)
            versions.update(self.store.key_versions(since=self._last_poll - CHANGE_WINDOW))
        self._last_poll = started
        return versions

    def poll_once(self, notify: Notify) -> list[str]:
        """One comparison; returns the tenants reported (the first poll sets the baseline)."""
        try:
            versions = self._fetch()
        except Exception as exc:  # the store is down: keep serving what we have, retry
            if self.last_error is None:
                log.warning("watcher: cannot poll the store: %s", exc)
            self.last_error = exc
            return []
        if self.last_error is not None:
            log.info("watcher: store reachable again")
            self.last_error = None
            # Changes may have been missed while down: report everything that differs, and
            # keep the baseline so that comparison happens.
        self.polls += 1
        old, self._versions = self._versions, versions
        changed = set() if old is None else set(changed_tenants(old, versions))
        if self.cached is not None:
            changed.update(n for n, v in self.cached().items() if versions.get(n) != v)
        for name in sorted(changed):
            try:
                notify(name)
            except Exception:
                log.exception("watcher: notify(%s) failed", name)
        return sorted(changed)

    def _loop(self, notify: Notify) -> None:
        while not self._stop.wait(self.interval):
            self.poll_once(notify)

    def start(self, notify: Notify) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.poll_once(notify)  # baseline before serving
        self._thread = threading.Thread(
            target=self._loop, args=(notify,), name="keyturn-watcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class ListenWatcher:
    """PostgreSQL ``LISTEN keyturn_keys`` (the core's :class:`PgListener`) as a Watcher."""

    def __init__(self, store: KeyStore) -> None:
        if store.dialect != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self.store = store
        self._listener: PgListener | None = None

    @property
    def connected(self) -> bool:
        return self._listener is not None and self._listener.connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._listener is not None and self._listener.connected.wait(timeout)

    def start(self, notify: Notify) -> None:
        if self._listener is None:
            self._listener = PgListener(self.store.url, notify)
            self._listener.start()
            # Not waiting for the connection: the poller covers the first moments.

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


def default_watchers(
    store: KeyStore,
    *,
    interval: float = DEFAULT_POLL_INTERVAL,
    cached: Callable[[], dict[str, int]] | None = None,
) -> list[Watcher]:
    """The poller everywhere, plus LISTEN/NOTIFY on PostgreSQL."""
    watchers: list[Watcher] = [PollingWatcher(store, interval=interval, cached=cached)]
    if store.dialect == "postgresql":
        watchers.append(ListenWatcher(store))
    return watchers
