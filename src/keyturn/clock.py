"""Injected time: the domain never reads the system clock itself, so tests can run a year fast."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class ServiceClock(Clock, Protocol):
    """A clock that also measures intervals: ``monotonic()`` seconds never go back (the service's
    and the document cache's revalidation timers)."""

    def monotonic(self) -> float: ...


class SystemClock:
    """Wall-clock UTC epoch seconds."""

    # The C function itself, not a method wrapping it: verifiers read the clock per token.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._t = start
        self._ahead = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        """Real monotonic time, moved forward by every ``advance``: intervals pass at least as
        fast as on the system clock, and never backwards."""
        with self._lock:
            return time.monotonic() + self._ahead

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
            self._ahead += max(seconds, 0.0)

    def set(self, t: float) -> None:
        with self._lock:
            self._t = t
