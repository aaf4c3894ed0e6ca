"""The sessions management API: roles, clients, sessions, policy, and bad input (problem+json)."""

from __future__ import annotations

import httpx
import pytest

from keyturn.sessions.service import SessionService
from keyturn.store.apikeys import ApiKeyStore, Role

from .conftest import TOKEN_URL

pytestmark = pytest.mark.anyio
BASE = "/api/v1/tenants/default"


def _bearer(api_keys: ApiKeyStore, role: str, tenant: str | None = "default") -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys.create(role, tenant=tenant, actor='t')[1]}"}


async def test_the_app_backend_story(
    client: httpx.AsyncClient, admin: dict[str, str], api_keys: ApiKeyStore
) -> None:
    """A manager registers the app; the app's backend (signer) opens a session for a user it
    authenticated, the app refreshes, and the backend logs the user out everywhere."""
    manager = _bearer(api_keys, "manager")
    signer = _bearer(api_keys, "signer")
    r = await client.post(
        f"{BASE}/oauth-clients",
        json={
            "token_endpoint_auth_method": "none",
            "grant_types": ["refresh_token"],
            "audience": "web",
            "description": "the web app",
        },
        headers=manager,
    )
    assert r.status_code == 201, r.text
    app_client = r.json()
    assert app_client["client_secret"] is None and app_client["audience"] == "web"
    cid = app_client["client_id"]
    r = await client.post(
        f"{BASE}/sessions",
        json={"client_id": cid, "subject": "alice", "claims": {"role": "buyer"}},
        headers=signer,
    )
    assert r.status_code == 201, r.text
    opened = r.json()
    assert opened["token_type"] == "Bearer" and opened["refresh_token"].startswith("ktr_")
    sid = opened["session"]["session_id"]
    assert opened["session"]["claims"] == {"role": "buyer", "aud": "web"}
    v = await client.post(
        f"{BASE}/tokens/verify",
        json={"token": opened["access_token"], "audience": "web"},
        headers=admin,
    )
    claims = v.json()["claims"]
    assert claims["sub"] == "alice" and claims["sid"] == sid and claims["client_id"] == cid
    r = await client.post(
        TOKEN_URL,
        data={
            "grant_type": "refresh_token",
            "refresh_token": opened["refresh_token"],
            "client_id": cid,
        },
    )
    assert r.status_code == 200, r.text
    listed = (await client.get(f"{BASE}/sessions?subject=alice", headers=signer)).json()
    assert [s["session_id"] for s in listed] == [sid] and listed[0]["refreshes"] == 1
    r = await client.post(
        f"{BASE}/sessions/revoke-subject", json={"subject": "alice"}, headers=signer
    )
    assert r.json() == {"subject": "alice", "revoked": [sid]}
    assert (await client.get(f"{BASE}/sessions/{sid}", headers=manager)).json()["revoked_at"]
    audit = (await client.get("/api/v1/audit?tenant=default&limit=10", headers=admin)).json()
    events = [x["event"] for x in audit["items"]]
    assert events[:3] == ["session.subject_revoked", "session.opened", "oauth_client.created"]


async def test_client_management_by_a_manager(
    client: httpx.AsyncClient, api_keys: ApiKeyStore
) -> None:
    manager = _bearer(api_keys, "manager")
    r = await client.post(f"{BASE}/oauth-clients", json={"scope": "read"}, headers=manager)
    created = r.json()
    cid, secret = created["client_id"], created["client_secret"]
    assert secret.startswith("kts_")
    shown = (await client.get(f"{BASE}/oauth-clients/{cid}", headers=manager)).json()
    assert "client_secret" not in shown and shown["grant_types"] == [
        "client_credentials",
        "refresh_token",
    ]
    rotated = (
        await client.post(f"{BASE}/oauth-clients/{cid}/rotate-secret", headers=manager)
    ).json()
    assert rotated["client_secret"] not in (None, secret)
    r = await client.post(f"{BASE}/oauth-clients/{cid}/revoke", headers=manager)
    assert r.json()["revoked_at"] is not None
    assert (await client.get(f"{BASE}/oauth-clients", headers=manager)).json() == []
    assert len((await client.get(f"{BASE}/oauth-clients?all=true", headers=manager)).json()) == 1
    r = await client.patch(f"{BASE}/session-policy", json={"reuse_grace": 0}, headers=manager)
    assert r.status_code == 200 and r.json()["reuse_grace"] == 0


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        pytest.param("signer", "POST", "/oauth-clients", {}, id="signer-creates-client"),
        pytest.param("viewer", "POST", "/oauth-clients", {}, id="viewer-creates-client"),
        pytest.param(
            "manager",
            "POST",
            "/sessions",
            {"client_id": "ktc_" + "0" * 24, "subject": "a"},
            id="manager-opens",
        ),
        pytest.param(
            "viewer", "POST", "/sessions/revoke-subject", {"subject": "a"}, id="viewer-logs-out"
        ),
        pytest.param(
            "signer", "PATCH", "/session-policy", {"idle_ttl": 60}, id="signer-sets-policy"
        ),
        pytest.param("other-tenant", "GET", "/sessions", None, id="other-tenant"),
    ],
)
async def test_roles(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    ready_service: object,
    role: str,
    method: str,
    path: str,
    body: object,
) -> None:
    if role == "other-tenant":
        from keyturn.keys.algorithms import Alg
        from keyturn.ring.model import Policy

        ready_service.create_tenant(  # type: ignore[attr-defined]
            "other", issuer="https://x.test/t/other", policy=Policy(alg=Alg.EdDSA), actor="t"
        )
        headers = _bearer(api_keys, "signer", "other")
    else:
        headers = _bearer(api_keys, role)
    r = await client.request(method, BASE + path, json=body, headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        pytest.param(
            "POST",
            "/oauth-clients",
            {"grant_types": ["password"]},
            422,
            "invalid_input",
            id="unknown-grant",
        ),
        pytest.param(
            "POST", "/oauth-clients", {"grant_types": []}, 422, "invalid_input", id="no-grant"
        ),
        pytest.param(
            "POST",
            "/oauth-clients",
            {"token_endpoint_auth_method": "none"},
            422,
            "invalid_input",
            id="public-client-credentials",
        ),
        pytest.param(
            "POST", "/oauth-clients", {"scope": 'a"b'}, 422, "invalid_input", id="bad-scope"
        ),
        pytest.param(
            "POST", "/oauth-clients", {"extra": 1}, 422, "invalid_input", id="unknown-field"
        ),
        pytest.param(
            "GET", "/oauth-clients/nonsense", None, 422, "invalid_input", id="client-id-shape"
        ),
        pytest.param(
            "GET",
            "/oauth-clients/ktc_" + "0" * 24,
            None,
            404,
            "oauth_client_not_found",
            id="unknown-client",
        ),
        pytest.param(
            "POST",
            "/oauth-clients/ktc_" + "0" * 24 + "/revoke",
            None,
            404,
            "oauth_client_not_found",
            id="revoke-unknown-client",
        ),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "ktc_" + "0" * 24, "subject": "a"},
            404,
            "oauth_client_not_found",
            id="open-unknown-client",
        ),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "{cid}", "subject": ""},
            422,
            "invalid_input",
            id="empty-subject",
        ),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "{cid}", "subject": "a", "claims": {"sid": "x"}},
            422,
            "invalid_input",
            id="reserved-claim",
        ),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "{cid}", "subject": "a", "claims": {"x": float("nan")}},
            422,
            "invalid_input",
            id="nan-claim",
        ),
        pytest.param(
            "POST", "/sessions", {"client_id": "{cid}"}, 422, "invalid_input", id="missing-subject"
        ),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "{cid}", "subject": "a" * 300},
            422,
            "invalid_input",
            id="long-subject",
        ),
        pytest.param(
            "GET", "/sessions/" + "0" * 32, None, 404, "session_not_found", id="unknown-session"
        ),
        pytest.param(
            "POST",
            "/sessions/" + "0" * 32 + "/revoke",
            {},
            404,
            "session_not_found",
            id="revoke-unknown-session",
        ),
        pytest.param("GET", "/sessions?limit=0", None, 422, "invalid_input", id="limit"),
        pytest.param(
            "PATCH", "/session-policy", {"reuse_grace": 61}, 422, "invalid_input", id="long-grace"
        ),
        pytest.param(
            "PATCH",
            "/session-policy",
            {"idle_ttl": 10**9},
            422,
            "invalid_input",
            id="idle-over-absolute",
        ),
        pytest.param("PATCH", "/session-policy", {}, 422, "invalid_input", id="nothing"),
        pytest.param(
            "POST",
            "/sessions",
            {"client_id": "{cid}", "subject": "a", "claims": {"x": "y" * 70000}},
            413,
            "body_too_large",
            id="oversized",
        ),
        pytest.param(
            "POST",
            "/sessions/revoke-subject",
            {},
            422,
            "invalid_input",
            id="revoke-subject-missing",
        ),
        pytest.param(
            "POST",
            "/sessions/revoke-subject",
            {"subject": "a", "reason": ""},
            422,
            "invalid_input",
            id="revoke-subject-empty-reason",
        ),
        pytest.param(
            "POST",
            "/sessions/" + "0" * 31 + "z/revoke",
            {},
            422,
            "invalid_input",
            id="session-id-shape",
        ),
        pytest.param(
            "GET",
            "/sessions?client_id=nope",
            None,
            422,
            "invalid_input",
            id="list-client-shape",
        ),
    ],
)
async def test_bad_input_is_a_problem_and_changes_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    method: str,
    path: str,
    body: dict[str, object] | None,
    status: int,
    code: str,
) -> None:
    created = (await client.post(f"{BASE}/oauth-clients", json={}, headers=admin)).json()
    if body is not None and body.get("client_id") == "{cid}":
        body = {**body, "client_id": created["client_id"]}
    before = (await client.get("/api/v1/audit?limit=500", headers=admin)).json()["items"]
    if body is not None and any(v != v for v in body.get("claims", {}).values()):  # type: ignore[attr-defined]
        r = await client.request(
            method,
            BASE + path,
            content=b'{"client_id": "%s", "subject": "a", "claims": {"x": NaN}}'
            % created["client_id"].encode(),
            headers={**admin, "content-type": "application/json"},
        )
    else:
        r = await client.request(method, BASE + path, json=body, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code
    after = (await client.get("/api/v1/audit?limit=500", headers=admin)).json()["items"]
    assert after == before


# Every sessions operation of the API, with the roles (besides admin) allowed on their own
# tenant; tests/server/test_auth.py counts these in its every-operation check. Ordered so each
# still has something to act on (the client's revocation last).
SESSION_ROUTES: list[tuple[str, str, frozenset[Role]]] = [
    ("POST", "/oauth-clients", frozenset({Role.MANAGER})),
    ("GET", "/oauth-clients", frozenset({Role.MANAGER, Role.VIEWER})),
    ("GET", "/oauth-clients/{client_id}", frozenset({Role.MANAGER, Role.VIEWER})),
    ("POST", "/oauth-clients/{client_id}/rotate-secret", frozenset({Role.MANAGER})),
    ("GET", "/session-policy", frozenset({Role.MANAGER, Role.SIGNER, Role.VIEWER})),
    ("PATCH", "/session-policy", frozenset({Role.MANAGER})),
    ("POST", "/sessions", frozenset({Role.SIGNER})),
    ("GET", "/sessions", frozenset({Role.MANAGER, Role.SIGNER, Role.VIEWER})),
    ("GET", "/sessions/{session_id}", frozenset({Role.MANAGER, Role.SIGNER, Role.VIEWER})),
    ("POST", "/sessions/{session_id}/revoke", frozenset({Role.MANAGER, Role.SIGNER})),
    ("POST", "/sessions/revoke-subject", frozenset({Role.MANAGER, Role.SIGNER})),
    ("POST", "/oauth-clients/{client_id}/revoke", frozenset({Role.MANAGER})),
]
SESSION_OPERATIONS = {(m, "/api/v1/tenants/{tenant}" + p) for m, p, _ in SESSION_ROUTES}


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_session_role_matrix_on_own_tenant(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, sessions: SessionService, role: Role
) -> None:
    created, _ = sessions.create_client("default", actor="t")
    sess, _ = sessions.open_session("default", client_id=created.client_id, subject="a", actor="t")
    headers = _bearer(api_keys, role.value, None if role == Role.ADMIN else "default")
    bodies: dict[tuple[str, str], object] = {
        ("POST", "/oauth-clients"): {},
        ("PATCH", "/session-policy"): {"reuse_grace": 1},
        ("POST", "/sessions"): {"client_id": created.client_id, "subject": "b"},
        ("POST", "/sessions/{session_id}/revoke"): {},
        ("POST", "/sessions/revoke-subject"): {"subject": "nobody"},
    }
    for method, path, roles in SESSION_ROUTES:
        url = BASE + path.format(client_id=created.client_id, session_id=sess.session_id)
        r = await client.request(method, url, json=bodies.get((method, path)), headers=headers)
        label = f"{role} {method} {path}: {r.status_code} {r.text[:200]}"
        if role == Role.ADMIN or role in roles:
            assert r.status_code < 400, label
        else:
            assert r.status_code == 403, label
