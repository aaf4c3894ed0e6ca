"""The management API in-process with an admin key, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.server.problems import STATUS_BY_ERROR, status_for
from keyturn.service import KeyService

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

API = "/api/v1"


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    assert "Traceback" not in r.text
    return body  # type: ignore[no-any-return]


async def make_tenant(
    client: httpx.AsyncClient, admin: dict[str, str], name: str = "acme", alg: str = "ES256"
) -> dict[str, object]:
    r = await client.post(
        f"{API}/tenants", headers=admin, json={"name": name, "policy": {"alg": alg}}
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_tenants_create_list_show_policy(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    out = await make_tenant(client, admin)
    tenant = out["tenant"]
    assert isinstance(tenant, dict)
    assert tenant["issuer"] == f"{PUBLIC_URL}/t/acme"
    assert tenant["policy"]["alg"] == "ES256"
    assert [e["event"] for e in out["events"]] == ["key.created", "key.created"]  # type: ignore[union-attr,index]
    names = [t["name"] for t in (await client.get(f"{API}/tenants", headers=admin)).json()]
    assert names == ["acme", "default"]
    r = await client.get(f"{API}/tenants/acme", headers=admin)
    assert r.json()["name"] == "acme"
    assert_problem(
        await client.post(f"{API}/tenants", headers=admin, json={"name": "acme"}),
        409,
        "tenant_exists",
    )
    # Policy: unsafe refused with the rule named, then forced (and recorded as forced).
    bad = {"rotation_period": 60.0, "jwks_max_age": 600.0}
    body = assert_problem(
        await client.patch(f"{API}/tenants/acme/policy", headers=admin, json=bad),
        422,
        "policy_unsafe",
    )
    assert "pre-publication" in str(body["detail"])
    assert body["violations"]
    r = await client.patch(f"{API}/tenants/acme/policy", headers=admin, json={**bad, "force": True})
    assert r.status_code == 200, r.text
    assert r.json()["tenant"]["policy_forced"] is True
    assert r.json()["policy_violations_forced"]
    assert_problem(
        await client.patch(f"{API}/tenants/acme/policy", headers=admin, json={}),
        422,
        "invalid_input",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "acme", "extra": 1}, id="extra-field"),
        pytest.param({"name": "Not Valid"}, id="bad-name"),
        pytest.param({"name": "acme", "policy": {"alg": "HS256"}}, id="bad-alg"),
        pytest.param({"name": "acme", "policy": {"token_ttl": "3600"}}, id="string-number"),
        pytest.param({"name": "acme", "policy": {"rsa_bits": 1024}}, id="weak-rsa"),
        pytest.param({"name": "acme", "policy": {"rotation_period": 5e-324}}, id="denormal"),
        pytest.param({"name": "acme", "issuer": "ftp://x"}, id="bad-issuer"),
        pytest.param({"name": "acme", "force": "yes"}, id="strict-bool"),
        pytest.param([], id="not-object"),
    ],
)
async def test_strict_validation_is_a_problem(
    client: httpx.AsyncClient, admin: dict[str, str], body: object
) -> None:
    r = await client.post(f"{API}/tenants", headers=admin, json=body)
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["errors"]


async def test_validation_problem_never_echoes_input(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    secret = "hunter2-very-secret"
    r = await client.post(
        f"{API}/tenants/default/keys/import",
        headers=admin,
        json={"key": "!!notbase64", "password": secret, "format": "der"},
    )
    assert_problem(r, 422, "invalid_input")
    assert secret not in r.text


async def test_keys_list_show_never_private(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    keys = (await client.get(f"{API}/tenants/default/keys", headers=admin)).json()
    assert [k["state"] for k in keys] == ["next", "current"]
    for k in keys:
        assert "sealed_private" not in k
        assert k["has_private_key"] is True
        assert not {"d", "p", "q"} & k["public_jwk"].keys()
    kid = keys[0]["kid"]
    r = await client.get(f"{API}/tenants/default/keys/{kid}", headers=admin)
    assert r.json()["kid"] == kid
    assert "sealed" not in r.text
    assert_problem(
        await client.get(f"{API}/tenants/default/keys/nosuchkid", headers=admin),
        404,
        "key_not_found",
    )
    assert_problem(
        await client.get(f"{API}/tenants/nosuch/keys", headers=admin), 404, "tenant_not_found"
    )


async def test_rotate_if_current_revoke_and_rotate_and_revoke(
    client: httpx.AsyncClient, admin: dict[str, str], clock: FakeClock
) -> None:
    await make_tenant(client, admin)
    keys = (await client.get(f"{API}/tenants/acme/keys", headers=admin)).json()
    current = next(k["kid"] for k in keys if k["state"] == "current")
    assert_problem(
        await client.post(
            f"{API}/tenants/acme/keys/rotate", headers=admin, json={"if_current": "someoneelse"}
        ),
        409,
        "concurrent_change",
    )
    clock.advance(3600)
    r = await client.post(
        f"{API}/tenants/acme/keys/rotate",
        headers=admin,
        json={"if_current": current, "reason": "scheduled"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["events"][-1]["event"] == "key.rotated"
    r = await client.post(
        f"{API}/tenants/acme/keys/{current}/revoke", headers=admin, json={"reason": "leaked"}
    )
    assert r.status_code == 200
    assert r.json()["events"][0]["details"]["reason"] == "leaked"
    assert_problem(
        await client.post(
            f"{API}/tenants/acme/keys/{current}/revoke", headers=admin, json={"reason": "again"}
        ),
        409,
        "invalid_transition",
    )
    assert_problem(
        await client.post(
            f"{API}/tenants/acme/keys/{current}/revoke", headers=admin, json={"reason": "  "}
        ),
        422,
        "invalid_input",
    )
    r = await client.post(
        f"{API}/tenants/acme/keys/rotate-and-revoke", headers=admin, json={"reason": "pwned"}
    )
    assert r.status_code == 200
    assert r.json()["warnings"]
    r = await client.post(
        f"{API}/tenants/acme/keys/revoke-all", headers=admin, json={"reason": "store leaked"}
    )
    assert r.status_code == 200
    revoked = [e for e in r.json()["events"] if e["event"] == "key.revoked"]
    assert len(revoked) == 2
    everything = (
        await client.get(f"{API}/tenants/acme/keys", headers=admin, params={"all": "true"})
    ).json()
    assert sum(k["state"] == "revoked" for k in everything) == 4


async def test_import_pem_base64(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_tenant(client, admin)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    body = {
        "key": base64.b64encode(pem).decode(),
        "format": "pem",
        "password": "pw",
        "replace_next": True,  # the tenant has a next key: replacing it is asked for
    }
    r = await client.post(f"{API}/tenants/acme/keys/import", headers=admin, json=body)
    assert r.status_code == 200, r.text
    kid = r.json()["events"][-1]["kid"]
    k = (await client.get(f"{API}/tenants/acme/keys/{kid}", headers=admin)).json()
    assert (k["state"], k["origin"]) == ("next", "imported")
    # Wrong password, wrong algorithm for the tenant: 422 with the specific code.
    assert_problem(
        await client.post(
            f"{API}/tenants/acme/keys/import", headers=admin, json={**body, "password": "no"}
        ),
        422,
        "key_invalid",
    )
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    r = await client.post(
        f"{API}/tenants/acme/keys/import",
        headers=admin,
        json={"key": base64.b64encode(other).decode()},
    )
    assert r.status_code == 422
    # (the core reports a curve mismatch as key_weak)
    assert r.json()["code"] in {"key_invalid", "key_weak", "alg_unsupported", "invalid_input"}


async def test_sign_and_verify(
    client: httpx.AsyncClient, admin: dict[str, str], clock: FakeClock
) -> None:
    r = await client.post(
        f"{API}/tenants/default/tokens/sign",
        headers=admin,
        json={"claims": {"sub": "alice", "aud": "svc"}, "ttl": 600},
    )
    assert r.status_code == 200, r.text
    token, claims = r.json()["token"], r.json()["claims"]
    assert claims["iss"] == PUBLIC_URL
    assert claims["exp"] - claims["iat"] == 600
    r = await client.post(
        f"{API}/tenants/default/tokens/verify",
        headers=admin,
        json={"token": token, "audience": "svc"},
    )
    assert r.json()["valid"] is True
    assert r.json()["claims"]["sub"] == "alice"
    clock.advance(3600)
    r = await client.post(
        f"{API}/tenants/default/tokens/verify", headers=admin, json={"token": token}
    )
    assert r.status_code == 200
    assert r.json() == {
        "valid": False,
        "kid": None,
        "claims": None,
        "code": "expired",
        "detail": r.json()["detail"],
        "action": "refresh",
    }
    assert_problem(
        await client.post(
            f"{API}/tenants/default/tokens/sign", headers=admin, json={"claims": {}, "ttl": 7200}
        ),
        422,
        "token_lifetime_exceeded",
    )
    assert_problem(
        await client.post(
            f"{API}/tenants/default/tokens/sign",
            headers=admin,
            json={"claims": {"nbf": 1e300}},
        ),
        422,
        "invalid_input",
    )
    assert_problem(
        await client.post(
            f"{API}/tenants/nosuch/tokens/verify", headers=admin, json={"token": "x.y.z"}
        ),
        404,
        "tenant_not_found",
    )


async def test_plan(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.get(f"{API}/tenants/default/plan", headers=admin, params={"horizon": "70d"})
    assert r.status_code == 200
    steps = r.json()["steps"]
    assert [s["event"] for s in steps][:2] == ["rotate", "retire"]
    assert_problem(
        await client.get(f"{API}/tenants/default/plan", headers=admin, params={"horizon": "x"}),
        422,
        "invalid_input",
    )


async def test_audit_filter_and_cursor(
    client: httpx.AsyncClient, admin: dict[str, str], clock: FakeClock
) -> None:
    await make_tenant(client, admin)
    for _ in range(3):
        clock.advance(3600)
        await client.post(f"{API}/tenants/acme/keys/rotate", headers=admin, json={})
    r = await client.get(
        f"{API}/audit", headers=admin, params={"tenant": "acme", "event": "key.rotated", "limit": 2}
    )
    page = r.json()
    assert [i["event"] for i in page["items"]] == ["key.rotated"] * 2
    assert page["items"][0]["actor"].startswith("api:")
    assert page["next_cursor"]
    r = await client.get(
        f"{API}/audit",
        headers=admin,
        params={"tenant": "acme", "event": "key.rotated", "cursor": page["next_cursor"]},
    )
    rest = r.json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["items"][0]["id"] < page["items"][-1]["id"]
    since = page["items"][0]["at"]
    r = await client.get(f"{API}/audit", headers=admin, params={"tenant": "acme", "since": since})
    assert all(i["at"] >= since for i in r.json()["items"])
    assert_problem(
        await client.get(f"{API}/audit", headers=admin, params={"cursor": "abc"}),
        422,
        "invalid_input",
    )


async def test_body_size_limit(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    big = {"claims": {"x": "a" * 70_000}}
    r = await client.post(f"{API}/tenants/default/tokens/sign", headers=admin, json=big)
    assert_problem(r, 413, "body_too_large")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 4096

    # Chunked (no Content-Length): counted while read.
    r = await client.post(
        f"{API}/tenants/default/tokens/sign",
        headers={**admin, "content-type": "application/json"},
        content=chunks(),
    )
    assert_problem(r, 413, "body_too_large")


async def test_unknown_route_and_method_are_problems(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert_problem(await client.get(f"{API}/nothing", headers=admin), 404, "not_found")
    assert_problem(await client.delete(f"{API}/tenants", headers=admin), 405, "method_not_allowed")
    assert_problem(
        await client.post(
            f"{API}/tenants",
            headers={**admin, "content-type": "application/json"},
            content=b"{not json",
        ),
        422,
        "invalid_input",
    )


async def test_store_unavailable_is_503(
    client: httpx.AsyncClient, admin: dict[str, str], ready_service: KeyService
) -> None:
    def down(_stmt: str) -> None:
        raise E.StoreUnavailableError("test: database down")

    ready_service.store.fault_hook = down
    try:
        r = await client.get(f"{API}/tenants", headers=admin)
        assert_problem(r, 503, "store_unavailable")
        r = await client.get("/readyz")
        assert_problem(r, 503, "store_unavailable")
    finally:
        ready_service.store.fault_hook = None
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (E.TenantNotFoundError("x"), 404),
        (E.KeyNotFoundError("x"), 404),
        (E.TenantExistsError("x"), 409),
        (E.ConcurrentChangeError("x"), 409),
        (E.InvalidTransitionError("x"), 409),
        (E.UnsafePolicyError("x"), 422),
        (E.InvalidInputError("x"), 422),
        (E.WeakKeyError("x"), 422),
        (E.TokenLifetimeError("x"), 422),
        (E.AuthError("x"), 401),
        (E.ForbiddenError("x"), 403),
        (E.StoreUnavailableError("x"), 503),
        (E.MasterKeyError("x"), 500),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_status_table(exc: E.KeyturnError, status: int) -> None:
    assert status_for(exc) == status


def test_status_table_most_specific_first() -> None:
    for i, (cls, _) in enumerate(STATUS_BY_ERROR):
        for later, _ in STATUS_BY_ERROR[i + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


async def test_openapi_served_and_documents_problems(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    op = doc["paths"]["/api/v1/tenants"]["post"]
    assert "application/problem+json" in op["responses"]["422"]["content"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_undecodable_body_is_422_problem(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        f"{API}/tenants/default/tokens/verify",
        headers={**admin, "content-type": "application/json"},
        content=b"\x0b\xff\xfe\t\x80",
    )
    assert_problem(r, 422, "invalid_input")
