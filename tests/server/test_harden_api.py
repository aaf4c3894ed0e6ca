"""Issue #14 on the HTTP side: issuer changes, /readyz, 415, 405, If-None-Match."""

from __future__ import annotations

import httpx
import pytest

from keyturn.config import Settings
from keyturn.server.app import create_app
from keyturn.service import KeyService
from keyturn.store.sql import SqlStore

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio
API = "/api/v1"


async def test_issuer_change_refused_without_force_then_audited(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.put(
        f"{API}/tenants/default/issuer", json={"issuer": "https://auth.example.com"}, headers=admin
    )
    assert r.status_code == 409 and r.json()["code"] == "issuer_change_refused"
    assert (await client.get("/.well-known/openid-configuration")).json()["issuer"] == PUBLIC_URL
    r = await client.put(
        f"{API}/tenants/default/issuer",
        json={"issuer": "https://auth.example.com", "force": True, "reason": "move"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == "https://auth.example.com"
    r = await client.get(f"{API}/audit", params={"event": "tenant.issuer_changed"}, headers=admin)
    (rec,) = r.json()["items"]
    assert rec["reason"] == "move"
    assert rec["details"]["old"] == PUBLIC_URL


async def test_readyz_names_no_database_details(
    ready_service: KeyService, settings: Settings
) -> None:
    dead = SqlStore("postgresql+psycopg://postgres@127.0.0.1:1/secretdbname")
    svc = KeyService(dead, ready_service.sealer)
    app = create_app(settings, svc, watchers=[], api_keys=ready_service.api_keys())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["detail"] == "not ready: the key store does not answer"
    assert "127.0.0.1" not in r.text and "secretdbname" not in r.text and "port" not in r.text
    dead.dispose()


async def test_sign_without_json_content_type_is_415(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        f"{API}/tenants/default/tokens/sign",
        content=b'{"claims": {"sub": "u1"}}',
        headers={**admin, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in r.json()["detail"]
    r = await client.post(
        f"{API}/tenants/default/tokens/sign",
        content=b'{"claims": {"sub": "u1"}}',
        headers={**admin, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


async def test_get_on_rotate_is_405_naming_post(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.get(f"{API}/tenants/default/keys/rotate", headers=admin)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["code"] == "method_not_allowed"
    r = await client.put(f"{API}/tenants/default/keys/rotate", headers=admin)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await client.get(f"{API}/tenants/default/policy", headers=admin)
    assert r.status_code == 405 and r.headers["allow"] == "PATCH"


async def test_api_verify_of_a_deeply_nested_token_is_an_answer_not_a_500(
    client: httpx.AsyncClient, admin: dict[str, str], ready_service: KeyService
) -> None:
    value: object = "leaf"
    for _ in range(253):
        value = {"a": value}
    token, _ = ready_service.sign("default", {"sub": "u1", "deep": value})
    r = await client.post(
        f"{API}/tenants/default/tokens/verify", json={"token": token}, headers=admin
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is False and body["code"] == "token_malformed"
    assert "nested deeper than 32 levels" in body["detail"]


async def test_malformed_if_none_match_is_not_a_match(client: httpx.AsyncClient) -> None:
    from keyturn.server.public import if_none_match

    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]
    for header in (f"{etag}garbage", f"{etag} x", f'{etag}, "unterminated', f"{etag[:-1]}"):
        r = await client.get("/.well-known/jwks.json", headers={"If-None-Match": header})
        assert r.status_code == 200, header
    for header in (etag, f'"x", {etag}', f"W/{etag}", f" {etag} ,", "*"):
        r = await client.get("/.well-known/jwks.json", headers={"If-None-Match": header})
        assert r.status_code == 304, header
    tag = b'"abc"'
    assert not if_none_match(b'"abc"garbage', tag)
    assert not if_none_match(b'"abc" "abc"', tag)  # two tags need a comma
    assert not if_none_match(b'"a\x01c", "abc"', tag)  # a control character: malformed
    assert if_none_match(b'"x",,"abc"', tag)  # empty list elements are allowed (#rule)


async def test_api_turns_automatic_rotation_off_and_plan_says_manual(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.patch(
        f"{API}/tenants/default/policy", json={"auto_rotate": False}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"{API}/tenants/default", headers=admin)
    assert r.json()["policy"]["auto_rotate"] is False
    plan = (await client.get(f"{API}/tenants/default/plan", headers=admin)).json()
    assert plan["rotation"] == "manual"
    assert [s["event"] for s in plan["steps"]] == []
