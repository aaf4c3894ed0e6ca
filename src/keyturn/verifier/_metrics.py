"""Verifier counters and the ``on_event`` hook: what on-call needs to find a stale cache."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

logger = logging.getLogger("keyturn.verifier")

# Event names passed to ``on_event``.
FETCH = "fetch"
FETCH_ERROR = "fetch_error"
NOT_MODIFIED = "not_modified"
STALE = "stale"
UNKNOWN_KID = "unknown_kid"
REVOKED = "revoked"
REJECTED = "rejected"
FEED_ERROR = "feed_error"
FEED_RECONNECT = "feed_reconnect"
FEED_OFF = "feed_off"


@dataclass(frozen=True, slots=True)
class VerifierEvent:
    """Something the verifier did: ``name`` is one of the event names, ``data`` the details."""

    name: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StaleInfo:
    """Passed to ``on_stale`` when an expired key set is used because fetches fail."""

    url: str | None
    expired_for: float
    stale_limit_in: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A consistent copy of the counters at one moment."""

    fetches: int
    fetch_errors: int
    fetch_seconds_total: float
    not_modified: int
    stale_served: int
    unknown_kids: int
    revocations: int
    outcomes: Mapping[str, int]
    feed_errors: int = 0
    feed_too_large: int = 0


class VerifierMetrics:
    """Thread-safe counters: fetches, errors, latency, 304s, stale use, unknown kids, outcomes.

    ``outcomes`` counts verifications by result: ``"ok"`` or the error ``code``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fetches = 0
        self._fetch_errors = 0
        self._fetch_seconds = 0.0
        self._not_modified = 0
        self._stale = 0
        self._unknown = 0
        self._revocations = 0
        self._feed_errors = 0
        self._feed_too_large = 0
        self._outcomes: Counter[str] = Counter()
        # Successes are the hot path: counted without the lock by an itertools.count, whose
        # next() is one C call under the GIL. Reading consumes a value too, so reads (under
        # the lock) are counted and subtracted: exact, with no lock on the verify path.
        self._ok = itertools.count()
        self._ok_reads = 0

    def fetched(self, seconds: float, *, not_modified: bool = False) -> None:
        with self._lock:
            self._fetches += 1
            self._fetch_seconds += seconds
            if not_modified:
                self._not_modified += 1

    def fetch_failed(self, seconds: float) -> None:
        with self._lock:
            self._fetches += 1
            self._fetch_errors += 1
            self._fetch_seconds += seconds

    def stale_served(self) -> None:
        with self._lock:
            self._stale += 1

    def unknown_kid(self) -> None:
        with self._lock:
            self._unknown += 1

    def revoked(self, count: int) -> None:
        with self._lock:
            self._revocations += count

    def feed_failed(self, *, too_large: bool = False) -> None:
        """A revocation feed read failed (``too_large``: over the size cap, so it cannot heal)."""
        with self._lock:
            self._feed_errors += 1
            if too_large:
                self._feed_too_large += 1

    def ok(self) -> None:
        """One successful verification (lock-free)."""
        next(self._ok)

    def ok_counter(self) -> Callable[[], object]:
        """What a verifier calls per success: ``ok``, or the counter's own C method if no
        subclass overrides ``ok`` (one Python frame less per token)."""
        if type(self).ok is VerifierMetrics.ok:
            return self._ok.__next__
        return self.ok

    def outcome(self, reason: str) -> None:
        if reason == "ok":
            next(self._ok)
            return
        with self._lock:
            self._outcomes[reason] += 1

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                fetches=self._fetches,
                fetch_errors=self._fetch_errors,
                fetch_seconds_total=self._fetch_seconds,
                not_modified=self._not_modified,
                stale_served=self._stale,
                unknown_kids=self._unknown,
                revocations=self._revocations,
                outcomes=MappingProxyType(self._outcome_counts()),
                feed_errors=self._feed_errors,
                feed_too_large=self._feed_too_large,
            )

    def _outcome_counts(self) -> dict[str, int]:
        """Outcomes with ``ok`` read from its lock-free counter (call with the lock held)."""
        ok = next(self._ok) - self._ok_reads
        self._ok_reads += 1
        counts = dict(self._outcomes)
        if ok:
            counts["ok"] = ok
        return counts


T = TypeVar("T")

EventHook = Callable[[VerifierEvent], None]
StaleHook = Callable[[StaleInfo], None]


def call_hook(hook: Callable[[T], None] | None, arg: T) -> None:
    """Run a user hook; its failure is logged, never allowed to break verification."""
    if hook is None:
        return
    try:
        hook(arg)
    except Exception:
        logger.exception("keyturn verifier hook %r failed", hook)
