"""Wire settings into a store, a sealer and a service; create the embedded default on ``init``."""

from __future__ import annotations

import os

from keyturn.clock import ServiceClock
from keyturn.config import Settings
from keyturn.errors import TenantExistsError, TenantNotFoundError
from keyturn.keys.backends import KeyBackends
from keyturn.keys.sealing import Sealer
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.store.faults import FAULT_ENV, fault_hook_from_env
from keyturn.store.sql import FaultHook, SqlStore


def _test_fault_hook() -> FaultHook | None:
    """The crash tests' fault hook, only when ``KEYTURN_TEST_FAULT`` is set (see
    ``keyturn.store.faults``: real server processes started by the replica tests carry it in
    their environment, the only channel the tests have into them)."""
    if not os.environ.get(FAULT_ENV):
        return None
    return fault_hook_from_env(os.environ)


def open_service(
    settings: Settings, *, create: bool = False, clock: ServiceClock | None = None
) -> KeyService:
    """Open the store (migrating it to the latest schema) and the master keys."""
    if create:
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    sealer = Sealer(settings.master_keys(create=create))
    store = SqlStore(settings.database_url, fault_hook=_test_fault_hook())
    store.migrate()
    # The PKCS#11 module allow-list and PIN sources are read from the environment here, once;
    # a PIN itself is read only when a token session logs in.
    service = KeyService(store, sealer, clock, backends=KeyBackends.from_env(sealer, os.environ))
    if not settings.master_key_env:
        # The key file may gain a key while we run (`keyturn master-key rotate`): the service
        # reads it again when it meets a blob sealed under a key it has not loaded.
        service.reload_sealer = lambda: Sealer(settings.master_keys())
    return service


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
