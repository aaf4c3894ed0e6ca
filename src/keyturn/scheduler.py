"""The rotation scheduler: sweeps every tenant on an interval, inside ``keyturn serve``.

Several replicas may run it at once: each tenant is swept in its own transaction under the
tenant lock, and the due check is repeated under that lock, so a due rotation happens once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from keyturn.errors import KeyturnError
from keyturn.service import KeyService, Outcome

log = logging.getLogger("keyturn.scheduler")

DEFAULT_INTERVAL = 30.0


class Scheduler:
    """Runs ``service.sweep`` every ``interval`` seconds (with jitter) in a daemon thread."""

    def __init__(
        self,
        service: KeyService,
        *,
        interval: float = DEFAULT_INTERVAL,
        on_sweep: Callable[[list[Outcome], Exception | None], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.service = service
        self.interval = interval
        self.on_sweep = on_sweep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[Outcome]:
        try:
            results = self.service.sweep(actor="scheduler")
        except (KeyturnError, OSError) as exc:
            log.warning("scheduler sweep failed: %s", exc)
            if self.on_sweep:
                self.on_sweep([], exc)
            return []
        except Exception as exc:  # keep the scheduler alive; the failure is reported
            log.exception("scheduler sweep crashed")
            if self.on_sweep:
                self.on_sweep([], exc)
            return []
        for r in results:
            for ev in r.change.events:
                log.info("scheduler: tenant=%s event=%s kid=%s", r.tenant.name, ev.event, ev.kid)
        if self.on_sweep:
            self.on_sweep(results, None)
        return results

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            # Jitter spreads replicas' sweeps apart instead of colliding every interval.
            self._stop.wait(self.interval * random.uniform(0.8, 1.2))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="keyturn-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
