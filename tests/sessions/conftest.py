"""Session fixtures: the server fixtures (in-process app on SQLite and PostgreSQL), plus an
OAuth client and helpers to call the token endpoint."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx
import pytest

from keyturn.service import KeyService
from keyturn.sessions.model import OAuthClient
from keyturn.sessions.service import SessionService
from tests.server.conftest import (  # noqa: F401 (fixtures)
    admin,
    admin_token,
    anyio_backend,
    api_keys,
    app,
    client,
    make_app,
    ready_service,
    settings,
)

TOKEN_URL = "/oauth/token"
REVOKE_URL = "/oauth/revoke"


@dataclass(frozen=True)
class Registered:
    client: OAuthClient
    secret: str

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def basic(self) -> dict[str, str]:
        raw = f"{self.client.client_id}:{self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def sessions(ready_service: KeyService) -> SessionService:  # noqa: F811
    return SessionService(ready_service)


@pytest.fixture
def oauth_client(sessions: SessionService) -> Registered:
    c, secret = sessions.create_client("default", actor="test", audience="api")
    assert secret is not None
    return Registered(c, secret)


async def token(
    http: httpx.AsyncClient, data: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(TOKEN_URL, data=data, headers=headers or {})
