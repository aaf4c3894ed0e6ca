"""Two ``keyturn serve`` replicas on one PostgreSQL database share sessions: a client made on
one authenticates on the other, a session opened on one refreshes on the other, and a reuse is
detected whichever replica sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _pg_schema_url
from tests.replicas.harness import Replica, base_env, cli

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pair(tmp_path: Path, pg_database: str) -> Iterator[tuple[list[Replica], dict[str, str]]]:
    for url in _pg_schema_url(pg_database):
        env = base_env(tmp_path / "home", url)
        cli(env, "init")
        token = cli(env, "apikey", "create", "--role", "admin")["token"]
        started: list[Replica] = []
        try:
            for i in range(2):
                started.append(Replica.start(f"r{i}", env, tmp_path, "--no-scheduler"))
            yield started, {"Authorization": f"Bearer {token}"}
        finally:
            for r in started:
                r.stop()


def _api(r: Replica, admin: dict[str, str], method: str, path: str, **kw: Any) -> Any:
    res = httpx.request(method, f"{r.url}/api/v1{path}", headers=admin, timeout=30, **kw)
    assert res.status_code < 300, res.text
    return res.json()


def _refresh(r: Replica, cid: str, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": cid}
    return httpx.post(f"{r.url}/oauth/token", data=data, timeout=30)


def test_two_replicas_share_sessions(pair: tuple[list[Replica], dict[str, str]]) -> None:
    (a, b), admin = pair
    app = _api(
        a,
        admin,
        "POST",
        "/tenants/default/oauth-clients",
        json={"token_endpoint_auth_method": "none", "grant_types": ["refresh_token"]},
    )
    cid = app["client_id"]
    _api(b, admin, "PATCH", "/tenants/default/session-policy", json={"reuse_grace": 0})
    opened = _api(
        b, admin, "POST", "/tenants/default/sessions", json={"client_id": cid, "subject": "a"}
    )
    first = opened["refresh_token"]
    on_a = _refresh(a, cid, first)
    assert on_a.status_code == 200, on_a.text
    on_b = _refresh(b, cid, on_a.json()["refresh_token"])
    assert on_b.status_code == 200, on_b.text
    # The first token again, on the replica that did not rotate it last: a detected reuse.
    replay = _refresh(b, cid, first)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    sid = opened["session"]["session_id"]
    assert _api(a, admin, "GET", f"/tenants/default/sessions/{sid}")["revoked_at"] is not None
    assert _refresh(a, cid, on_b.json()["refresh_token"]).json()["error"] == "invalid_grant"

    # revoke-all through one replica; a session refreshes through the other with the new key.
    second = _api(
        a, admin, "POST", "/tenants/default/sessions", json={"client_id": cid, "subject": "b"}
    )
    _api(b, admin, "POST", "/tenants/default/keys/revoke-all", json={"reason": "drill"})
    new_kids = {k["kid"] for k in _api(b, admin, "GET", "/tenants/default/keys")}
    deadline = time.monotonic() + 5
    while True:
        served = httpx.get(f"{a.url}/.well-known/jwks.json", timeout=10).json()["keys"]
        if {k["kid"] for k in served} == new_kids:
            break
        assert time.monotonic() < deadline, "replica a never served the new keys"
        time.sleep(0.05)
    renewed = _refresh(a, cid, second["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    check = _api(
        b,
        admin,
        "POST",
        "/tenants/default/tokens/verify",
        json={"token": renewed.json()["access_token"]},
    )
    assert check["valid"] and check["kid"] in new_kids
