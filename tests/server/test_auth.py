"""API keys and roles: 401/403, the per-role matrix, and no reach across tenants on any route."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.server.auth import RIGHTS, Right
from keyturn.service import KeyService
from keyturn.store import schema
from keyturn.store.apikeys import TOUCH_INTERVAL, ApiKeyStore, Role, parse_token

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

API = "/api/v1"


def _ed25519_pem_b64() -> str:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(pem).decode()


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str  # {t} tenant, {kid} a published kid of that tenant
    right: Right
    body: dict[str, Any] | None = None
    query: str = ""

    @property
    def template(self) -> str:
        return API + self.path.replace("{t}", "{tenant}")

    def url(self, tenant: str, kid: str) -> str:
        return API + self.path.format(t=tenant, kid=kid) + self.query


# Every tenant-scoped operation of the API, in an order in which each one still has something
# to act on when run against the same tenant (revoke-all last).
TENANT_ROUTES = [
    RouteCase("GET", "/tenants/{t}", Right.READ),
    RouteCase("GET", "/tenants/{t}/keys", Right.READ),
    RouteCase("GET", "/tenants/{t}/keys/{kid}", Right.READ),
    RouteCase("GET", "/tenants/{t}/plan", Right.READ),
    RouteCase("GET", "/audit", Right.READ, query="?tenant={t}"),
    RouteCase("POST", "/tenants/{t}/tokens/sign", Right.SIGN, {"claims": {"sub": "x"}}),
    RouteCase(
        "POST", "/tenants/{t}/tokens/sign-batch", Right.SIGN, {"items": [{"claims": {"sub": "x"}}]}
    ),
    RouteCase("POST", "/tenants/{t}/tokens/verify", Right.VERIFY, {"token": "a.b.c"}),
    RouteCase("PATCH", "/tenants/{t}/policy", Right.MANAGE, {"token_ttl": 1800.0}),
    RouteCase(
        "PUT", "/tenants/{t}/issuer", Right.MANAGE, {"issuer": "https://x.test", "force": True}
    ),
    RouteCase(
        "POST",
        "/tenants/{t}/keys/import",
        Right.MANAGE,
        {"key": _ed25519_pem_b64(), "replace_next": True},
    ),
    RouteCase("POST", "/tenants/{t}/keys/rotate", Right.MANAGE, {}),
    RouteCase("POST", "/tenants/{t}/keys/{kid}/revoke", Right.MANAGE, {"reason": "t"}),
    RouteCase("POST", "/tenants/{t}/keys/rotate-and-revoke", Right.MANAGE, {"reason": "t"}),
    RouteCase("POST", "/tenants/{t}/keys/revoke-all", Right.MANAGE, {"reason": "t"}),
]
GLOBAL_ROUTES = {("GET", f"{API}/tenants"), ("POST", f"{API}/tenants"), ("GET", f"{API}/audit")}


def _url(case: RouteCase, tenant: str, kid: str) -> str:
    return API + case.path.format(t=tenant, kid=kid) + case.query.format(t=tenant)


@pytest.fixture
def two_tenants(ready_service: KeyService) -> KeyService:
    for name in ("a", "b"):
        ready_service.create_tenant(
            name, issuer=f"{PUBLIC_URL}/t/{name}", policy=Policy(alg=Alg.EdDSA), actor="test"
        )
    return ready_service


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _next_kid(service: KeyService, tenant: str) -> str:
    _, ring = service.ring(tenant)
    assert ring.next is not None
    return ring.next.kid


async def test_route_table_covers_every_operation(client: httpx.AsyncClient) -> None:
    doc = (await client.get(f"{API}/openapi.json")).json()
    ops = {
        (method.upper(), path)
        for path, methods in doc["paths"].items()
        if path.startswith(API + "/")
        for method in methods
    }
    from tests.sessions.test_sessions_api import SESSION_OPERATIONS  # their own role table

    tested = {(c.method, c.template) for c in TENANT_ROUTES} | GLOBAL_ROUTES | SESSION_OPERATIONS
    assert ops == tested


@pytest.mark.parametrize("role", [Role.MANAGER, Role.SIGNER, Role.VIEWER], ids=str)
async def test_scoped_key_can_do_nothing_to_another_tenant(
    client: httpx.AsyncClient, two_tenants: KeyService, api_keys: ApiKeyStore, role: Role
) -> None:
    service = two_tenants
    _, token = api_keys.create(role, tenant="a", actor="test")
    before = service.tenant("b").key_version
    audit_before = len(service.store.audit_records(tenant="b", limit=1000))
    kid_b = _next_kid(service, "b")
    for case in TENANT_ROUTES:
        for tenant in ("b", "nosuch"):  # existing or not: the same 403
            r = await client.request(
                case.method, _url(case, tenant, kid_b), headers=bearer(token), json=case.body
            )
            assert r.status_code == 403, f"{role} {case.method} {case.path} on {tenant}: {r.text}"
            assert r.json()["code"] == "forbidden"
    # Global routes: no creation, and lists show tenant a only.
    r = await client.post(f"{API}/tenants", headers=bearer(token), json={"name": "c"})
    assert r.status_code == 403
    r = await client.get(f"{API}/tenants", headers=bearer(token))
    if Right.READ in RIGHTS[role]:
        assert [t["name"] for t in r.json()] == ["a"]
    else:
        assert r.status_code == 403
    r = await client.get(f"{API}/audit", headers=bearer(token))
    if Right.READ in RIGHTS[role]:
        assert {i["tenant"] for i in r.json()["items"]} == {"a"}
    else:
        assert r.status_code == 403
    # Nothing happened to b.
    assert service.tenant("b").key_version == before
    assert len(service.store.audit_records(tenant="b", limit=1000)) == audit_before


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_role_matrix_on_own_tenant(
    client: httpx.AsyncClient,
    two_tenants: KeyService,
    api_keys: ApiKeyStore,
    clock: FakeClock,
    role: Role,
) -> None:
    service = two_tenants
    _, token = api_keys.create(role, tenant=None if role == Role.ADMIN else "a", actor="test")
    for case in TENANT_ROUTES:
        clock.advance(3600)
        kid = _next_kid(service, "a")
        r = await client.request(
            case.method, _url(case, "a", kid), headers=bearer(token), json=case.body
        )
        allowed = case.right in RIGHTS[role]
        label = f"{role} {case.method} {case.path}: {r.status_code} {r.text[:200]}"
        if allowed:
            assert r.status_code < 400, label
        else:
            assert r.status_code == 403, label
    r = await client.post(
        f"{API}/tenants", headers=bearer(token), json={"name": "c", "policy": {"alg": "EdDSA"}}
    )
    assert r.status_code == (201 if role == Role.ADMIN else 403)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Bearer ", id="empty"),
        pytest.param("Bearer not-a-keyturn-key", id="malformed"),
        pytest.param("Bearer kt_0123456789abcdef_" + "x" * 43, id="unknown-id"),
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("revoked", id="revoked"),
    ],
)
async def test_unauthenticated_401(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, header: str | None
) -> None:
    rec, token = api_keys.create("admin", actor="test")
    if header == "wrong-secret":
        header = "Bearer " + token[:-4] + "AAAA"
    elif header == "revoked":
        api_keys.revoke(rec.key_id, actor="test")
        header = "Bearer " + token
    headers = {"Authorization": header} if header is not None else {}
    r = await client.get(f"{API}/tenants", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="keyturn"'
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthenticated"
    if header and header.startswith("Bearer kt_"):
        # Unknown, wrong and revoked keys are indistinguishable.
        assert r.json()["detail"] == "invalid or revoked API key"


async def test_key_stored_hashed_last_used_recorded_cheaply(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, ready_service: KeyService, clock: FakeClock
) -> None:
    rec, token = api_keys.create("viewer", tenant="default", description="ci", actor="test")
    key_id, secret = parse_token(token) or ("", "")
    assert key_id == rec.key_id
    with ready_service.store.read() as tx:
        row = tx.conn.execute(
            select(schema.api_keys).where(schema.api_keys.c.key_id == key_id)
        ).one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(tuple(row))
    assert api_keys.get(key_id).last_used_at is None

    writes: list[str] = []

    def count(stmt: str) -> None:
        if stmt.lstrip().upper().startswith("UPDATE API_KEYS"):
            writes.append(stmt)

    ready_service.store.fault_hook = count
    try:
        for _ in range(5):
            assert (await client.get(f"{API}/tenants/default", headers=bearer(token))).is_success
        assert len(writes) == 1
        first = api_keys.get(key_id).last_used_at
        assert first == clock.now()
        clock.advance(TOUCH_INTERVAL + 1)
        await client.get(f"{API}/tenants/default", headers=bearer(token))
        assert len(writes) == 2
    finally:
        ready_service.store.fault_hook = None
    assert api_keys.get(key_id).last_used_at == clock.now()


def test_apikey_lifecycle_is_audited(api_keys: ApiKeyStore, ready_service: KeyService) -> None:
    rec, token = api_keys.create("signer", tenant="default", actor="ops")
    api_keys.revoke(rec.key_id, actor="ops")
    events = ready_service.store.audit_records(tenant="default", limit=10)
    created = next(e for e in events if e.event == "apikey.created")
    revoked = next(e for e in events if e.event == "apikey.revoked")
    assert created.details["key_id"] == revoked.details["key_id"] == rec.key_id
    assert created.actor == "ops"
    assert token not in orjson.dumps([e.to_dict() for e in events]).decode()
    assert [k.key_id for k in api_keys.list()] == []
    assert [k.key_id for k in api_keys.list(include_revoked=True)] == [rec.key_id]


@pytest.mark.parametrize(
    ("role", "tenant"),
    [("admin", "default"), ("viewer", None), ("viewer", "nosuch"), ("root", None)],
)
def test_apikey_create_refuses_bad_scope(
    api_keys: ApiKeyStore, role: str, tenant: str | None
) -> None:
    from keyturn.errors import InvalidInputError, NotFoundError

    with pytest.raises((InvalidInputError, NotFoundError)):
        api_keys.create(role, tenant=tenant, actor="t")


def test_apikey_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from keyturn.cli import main

    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path))
    monkeypatch.delenv("KEYTURN_DATABASE_URL", raising=False)
    monkeypatch.delenv("KEYTURN_MASTER_KEY", raising=False)
    monkeypatch.delenv("KEYTURN_MASTER_KEY_FILE", raising=False)
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["apikey", "create", "--role", "viewer", "--tenant", "default"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert parse_token(token) is not None
    assert "shown once" in out.err
    assert main(["apikey", "create", "--role", "admin", "--description", "ops", "--json"]) == 0
    created = orjson.loads(capsys.readouterr().out)
    assert created["role"] == "admin" and created["token"].startswith("kt_")
    assert main(["apikey", "list", "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert len(listed) == 2
    assert all("token" not in k and "secret_hash" not in k for k in listed)
    assert main(["apikey", "revoke", created["key_id"]]) == 0
    capsys.readouterr()
    assert main(["apikey", "list", "--json"]) == 0
    assert len(orjson.loads(capsys.readouterr().out)) == 1
    assert main(["apikey", "create", "--role", "signer"]) == 6  # invalid input: no tenant
