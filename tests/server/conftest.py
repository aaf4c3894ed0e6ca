"""Server fixtures: an in-process app on the ``service`` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.bootstrap import ensure_default_tenant
from keyturn.config import Settings
from keyturn.server.app import KeyturnApp, create_app
from keyturn.service import KeyService
from keyturn.store.apikeys import ApiKeyStore
from keyturn.store.sql import SqlStore

from .live import LiveServer

PUBLIC_URL = "https://keys.example.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, service: KeyService) -> Settings:
    return Settings(home=tmp_path, database_url=service.store.url, public_url=PUBLIC_URL)


@pytest.fixture
def ready_service(service: KeyService, settings: Settings) -> KeyService:
    """The service with its default tenant (RS256), as ``keyturn serve`` starts it."""
    ensure_default_tenant(service, settings, actor="test")
    return service


@pytest.fixture
async def make_app(store: SqlStore) -> AsyncIterator[Callable[..., KeyturnApp]]:
    """``create_app`` for tests: every app built is shut down at teardown, started or not.

    An app's background threads outlive the test otherwise: the fast sign path's API-key
    usage thread (started by the first request it authenticates) writes ``last_used_at``
    through the store, and one still writing when the ``store`` fixture disposes the engine
    leaves a psycopg connection open that the garbage collector reports later, in whichever
    test happens to run then. Depending on ``store`` makes this teardown run before its
    ``dispose()``.
    """
    apps: list[KeyturnApp] = []

    def make(settings: Settings, service: KeyService, **kwargs: Any) -> KeyturnApp:
        app = create_app(settings, service, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in reversed(apps):
        await app.shutdown()


@pytest.fixture
def app(
    make_app: Callable[..., KeyturnApp], ready_service: KeyService, settings: Settings
) -> KeyturnApp:
    # No watcher thread in-process: tests that need one start it explicitly.
    return make_app(settings, ready_service, watchers=[])


@pytest.fixture
async def client(app: KeyturnApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        yield c


@pytest.fixture
def api_keys(ready_service: KeyService) -> ApiKeyStore:
    return ApiKeyStore(ready_service.store, ready_service.clock)


@pytest.fixture
def admin_token(api_keys: ApiKeyStore) -> str:
    return api_keys.create("admin", actor="test")[1]


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


# --- a real `keyturn serve` over loopback ----------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module (SQLite in a temporary KEYTURN_HOME), stopped at the end."""
    home = tmp_path_factory.mktemp("live")
    metadata = home / "oidc.json"
    metadata.write_text('{"*": {"token_endpoint": "https://auth.example.test/oauth/token"}}')
    server = LiveServer.start(home, "--oidc-metadata", str(metadata))
    try:
        yield server
    finally:
        server.stop()
