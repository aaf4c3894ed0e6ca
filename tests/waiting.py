"""Wait for a condition with a deadline: the tests' only way to synchronise with other threads,
tasks and processes. A fixed sleep either waits too little under load (a flaky failure) or, in
front of a negative assertion, proves nothing; these poll the event itself and fail loudly
with ``what`` when the bound passes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_BOUND = 10.0


def wait_until(
    condition: Callable[[], T], *, bound: float = DEFAULT_BOUND, what: str = "", tick: float = 0.005
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``bound`` s."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {bound:g}s: {what or condition!r}")
        time.sleep(tick)


async def async_wait_until(
    condition: Callable[[], T], *, bound: float = DEFAULT_BOUND, what: str = "", tick: float = 0.001
) -> T:
    """``wait_until`` for asyncio: yields to the loop between polls."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {bound:g}s: {what or condition!r}")
        await asyncio.sleep(tick)


def waiters(event: threading.Event) -> int:
    """How many threads are blocked in ``event.wait()`` right now.

    Reads CPython's ``Event._cond._waiters`` (one lock per waiting thread, unchanged since
    Python 3.2): the only direct view of "every caller is now waiting", which a sleep only
    hopes for.
    """
    return len(event._cond._waiters)  # type: ignore[attr-defined]
