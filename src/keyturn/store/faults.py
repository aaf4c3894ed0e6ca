"""Test-only fault injection for crash tests with real processes; never active in production.

``bootstrap.open_service`` imports ``fault_hook_from_env`` only when ``KEYTURN_TEST_FAULT`` is
set. It is an environment variable because the replica tests start real ``keyturn serve``
processes and the environment is the only thing they hand those processes; in-process tests
pass ``SqlStore(url, fault_hook=...)`` directly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from keyturn.errors import ConfigError
from keyturn.store.sql import FaultHook

FAULT_ENV = "KEYTURN_TEST_FAULT"
FAULT_MARKER_ENV = "KEYTURN_TEST_FAULT_MARKER"


def fault_hook_from_env(env: Mapping[str, str]) -> FaultHook | None:
    """A fault-injection point for crash tests with real processes; off unless the variable is set.

    ``KEYTURN_TEST_FAULT=sleep:<SQL prefix>:<seconds>`` sleeps (once) before the first statement
    starting with the prefix, after touching the file named by ``KEYTURN_TEST_FAULT_MARKER``, so
    a test can SIGKILL the process in the middle of a transaction;
    ``crash:<SQL prefix>`` ends the process there at once, as a power cut would.
    """
    spec = env.get(FAULT_ENV)
    if not spec:
        return None
    action, _, rest = spec.partition(":")
    prefix, _, arg = rest.rpartition(":") if action == "sleep" else (rest, "", "")
    if action not in ("sleep", "crash") or not prefix:
        raise ConfigError(f"{FAULT_ENV} must be sleep:<SQL prefix>:<seconds> or crash:<SQL prefix>")
    marker = env.get(FAULT_MARKER_ENV)
    fired = threading.Event()

    def hook(statement: str) -> None:
        if fired.is_set() or not statement.lstrip().upper().startswith(prefix.upper()):
            return
        fired.set()
        if marker:
            Path(marker).write_text(str(os.getpid()))
        if action == "crash":
            os._exit(137)
        time.sleep(float(arg))

    return hook
