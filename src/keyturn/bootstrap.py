"""Wire settings into a store, a sealer and a service; create the embedded default on ``init``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from keyturn.clock import Clock
from keyturn.config import Settings
from keyturn.errors import ConfigError, TenantExistsError, TenantNotFoundError
from keyturn.keys.backends import KeyBackends
from keyturn.keys.sealing import Sealer
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.store.sql import FaultHook, SqlStore

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


def open_service(
    settings: Settings, *, create: bool = False, clock: Clock | None = None
) -> KeyService:
    """Open the store (migrating it to the latest schema) and the master keys."""
    if create:
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    sealer = Sealer(settings.master_keys(create=create))
    store = SqlStore(settings.database_url, fault_hook=fault_hook_from_env(os.environ))
    store.migrate()
    # The PKCS#11 module allow-list and PIN sources are read from the environment here, once;
    # a PIN itself is read only when a token session logs in.
    return KeyService(store, sealer, clock, backends=KeyBackends.from_env(sealer, os.environ))


def ensure_default_tenant(service: KeyService, settings: Settings, *, actor: str) -> bool:
    """Create tenant ``default`` (RS256, the algorithm every OIDC client accepts) if missing."""
    try:
        service.tenant(settings.default_tenant)
        return False
    except TenantNotFoundError:
        pass
    try:
        service.create_tenant(
            settings.default_tenant,
            issuer=settings.issuer_for(settings.default_tenant),
            policy=Policy(),
            actor=actor,
            key_backend=settings.key_backend,
        )
    except TenantExistsError:  # another process created it first
        return False
    return True
