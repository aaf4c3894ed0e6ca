"""The management API's rights, written out by hand: every route, every role, literal statuses.

``test_auth.py`` derives its expectations from ``keyturn.server.auth.RIGHTS``, so it agrees with
any table, including a wrong one. Here the expected status of every (route, role, tenant) is a
number typed in from the README's rights table (and, for the OAuth-client, session-policy and
session routes, from the table in ``docs/sessions.md``): a ``viewer`` that may sign or a ``signer`` that
may rotate fails this file, whatever ``RIGHTS`` says.

Keys: ``admin`` is unscoped (every tenant); ``manager``, ``signer`` and ``viewer`` are scoped to
tenant ``a``. Targets: ``a`` (the scoped keys' own tenant), ``b`` (another existing tenant) and
``nosuch`` (no such tenant: a scoped key must get the same 403 as for ``b``).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from keyturn.clock import FakeClock
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.sessions.service import MAX_SESSIONS_PAGE as MAX_PAGE
from keyturn.sessions.service import SessionService
from keyturn.store.apikeys import ApiKeyStore

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

API = "/api/v1"
ROLES = ("admin", "manager", "signer", "viewer")


def _pem_b64() -> str:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(pem).decode()


# (method, path, body, admin, manager, signer, viewer): the status each key gets on its OWN
# tenant ``a`` (admin: on any existing tenant). Ordered so each route still has something to
# act on when the rows run one after another against one tenant: the fixture's session is
# revoked before its subject is logged out, its OAuth client is revoked after both (revoking a
# client ends its sessions), and revoke-all comes last. ``{cid}`` and ``{sid}`` are the
# target tenant's OAuth client and session made by the ``tenants`` fixture.
TENANT_ROWS: list[tuple[str, str, dict[str, Any] | None, int, int, int, int]] = [
    # docs/sessions.md: managers (and admins) manage OAuth clients and the session policy,
    # signers open sessions, signers and managers end sessions, viewers read.
    ("GET", "/tenants/{t}/oauth-clients", None, 200, 200, 403, 200),
    ("GET", "/tenants/{t}/oauth-clients/{cid}", None, 200, 200, 403, 200),
    ("GET", "/tenants/{t}/session-policy", None, 200, 200, 200, 200),
    ("PATCH", "/tenants/{t}/session-policy", {"idle_ttl": 7200.0}, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/sessions", {"client_id": "{cid}", "subject": "bob"}, 201, 403, 201, 403),
    ("GET", "/tenants/{t}/sessions", None, 200, 200, 200, 200),
    ("GET", "/tenants/{t}/sessions/{sid}", None, 200, 200, 200, 200),
    ("POST", "/tenants/{t}/sessions/{sid}/revoke", {"reason": "t"}, 200, 200, 200, 403),
    ("POST", "/tenants/{t}/sessions/revoke-subject", {"subject": "bob"}, 200, 200, 200, 403),
    ("POST", "/tenants/{t}/oauth-clients/{cid}/rotate-secret", None, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/oauth-clients", {"description": "t"}, 201, 201, 403, 403),
    ("POST", "/tenants/{t}/oauth-clients/{cid}/revoke", None, 200, 200, 403, 403),
    ("GET", "/tenants/{t}", None, 200, 200, 403, 200),
    ("GET", "/tenants/{t}/keys", None, 200, 200, 403, 200),
    ("GET", "/tenants/{t}/keys/{kid}", None, 200, 200, 403, 200),
    ("GET", "/tenants/{t}/plan", None, 200, 200, 403, 200),
    ("GET", "/audit?tenant={t}", None, 200, 200, 403, 200),
    ("POST", "/tenants/{t}/tokens/sign", {"claims": {"sub": "x"}}, 200, 403, 200, 403),
    ("POST", "/tenants/{t}/tokens/sign-batch", {"items": [{}]}, 200, 403, 200, 403),
    ("POST", "/tenants/{t}/tokens/verify", {"token": "a.b.c"}, 200, 200, 200, 200),
    ("PATCH", "/tenants/{t}/policy", {"token_ttl": 1800.0}, 200, 200, 403, 403),
    (
        "PUT",
        "/tenants/{t}/issuer",
        {"issuer": "https://id.example.com/a", "force": True},
        200,
        200,
        403,
        403,
    ),
    ("POST", "/tenants/{t}/keys/import", {"key": "PEM", "replace_next": True}, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/keys/rotate", {}, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/keys/{kid}/revoke", {"reason": "t"}, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/keys/rotate-and-revoke", {"reason": "t"}, 200, 200, 403, 403),
    ("POST", "/tenants/{t}/keys/revoke-all", {"reason": "t"}, 200, 200, 403, 403),
]

# The admin key on a tenant that does not exist: 404 where the route looks the tenant up.
ADMIN_ON_NOSUCH = {
    "/tenants/{t}/oauth-clients": 404,
    "/tenants/{t}/oauth-clients/{cid}": 404,
    "/tenants/{t}/session-policy": 404,
    "/tenants/{t}/sessions": 404,
    "/tenants/{t}/sessions/{sid}": 404,
    "/tenants/{t}/sessions/{sid}/revoke": 404,
    "/tenants/{t}/sessions/revoke-subject": 404,
    "/tenants/{t}/oauth-clients/{cid}/rotate-secret": 404,
    "/tenants/{t}/oauth-clients/{cid}/revoke": 404,
    "/tenants/{t}": 404,
    "/tenants/{t}/keys": 404,
    "/tenants/{t}/keys/{kid}": 404,
    "/tenants/{t}/plan": 404,
    "/audit?tenant={t}": 200,  # a filter that matches nothing
    "/tenants/{t}/tokens/sign": 404,
    "/tenants/{t}/tokens/sign-batch": 404,
    "/tenants/{t}/tokens/verify": 404,
    "/tenants/{t}/policy": 404,
    "/tenants/{t}/issuer": 404,
    "/tenants/{t}/keys/import": 404,
    "/tenants/{t}/keys/rotate": 404,
    "/tenants/{t}/keys/{kid}/revoke": 404,
    "/tenants/{t}/keys/rotate-and-revoke": 404,
    "/tenants/{t}/keys/revoke-all": 404,
}

# Routes without a tenant in the path: (method, path, admin, manager, signer, viewer).
GLOBAL_ROWS = [
    ("GET", "/tenants", 200, 200, 403, 200),
    ("POST", "/tenants", 201, 403, 403, 403),
    ("GET", "/audit", 200, 200, 403, 200),
]

# Every management operation the app serves, written out; a new route must join the tables.
ALL_OPERATIONS = {
    ("GET", "/api/v1/tenants"),
    ("POST", "/api/v1/tenants"),
    ("GET", "/api/v1/tenants/{tenant}"),
    ("PATCH", "/api/v1/tenants/{tenant}/policy"),
    ("PUT", "/api/v1/tenants/{tenant}/issuer"),
    ("GET", "/api/v1/tenants/{tenant}/keys"),
    ("GET", "/api/v1/tenants/{tenant}/keys/{kid}"),
    ("POST", "/api/v1/tenants/{tenant}/keys/rotate"),
    ("POST", "/api/v1/tenants/{tenant}/keys/{kid}/revoke"),
    ("POST", "/api/v1/tenants/{tenant}/keys/rotate-and-revoke"),
    ("POST", "/api/v1/tenants/{tenant}/keys/revoke-all"),
    ("POST", "/api/v1/tenants/{tenant}/keys/import"),
    ("POST", "/api/v1/tenants/{tenant}/tokens/sign"),
    ("POST", "/api/v1/tenants/{tenant}/tokens/sign-batch"),
    ("POST", "/api/v1/tenants/{tenant}/tokens/verify"),
    ("GET", "/api/v1/tenants/{tenant}/plan"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/tenants/{tenant}/oauth-clients"),
    ("GET", "/api/v1/tenants/{tenant}/oauth-clients"),
    ("GET", "/api/v1/tenants/{tenant}/oauth-clients/{client_id}"),
    ("POST", "/api/v1/tenants/{tenant}/oauth-clients/{client_id}/rotate-secret"),
    ("POST", "/api/v1/tenants/{tenant}/oauth-clients/{client_id}/revoke"),
    ("GET", "/api/v1/tenants/{tenant}/session-policy"),
    ("PATCH", "/api/v1/tenants/{tenant}/session-policy"),
    ("POST", "/api/v1/tenants/{tenant}/sessions"),
    ("GET", "/api/v1/tenants/{tenant}/sessions"),
    ("POST", "/api/v1/tenants/{tenant}/sessions/revoke-subject"),
    ("GET", "/api/v1/tenants/{tenant}/sessions/{session_id}"),
    ("POST", "/api/v1/tenants/{tenant}/sessions/{session_id}/revoke"),
}

# What each role may change on its own tenant (admin: on any tenant): the signing keys, the
# OAuth clients with the session policy, and the sessions. Everything else stays as it was.
MAY_CHANGE = {
    "admin": {"keys", "clients", "sessions"},
    "manager": {"keys", "clients", "sessions"},
    "signer": {"sessions"},
    "viewer": set(),
}


def _expected(row: tuple[Any, ...], role: str, offset: int) -> int:
    return int(row[offset + ROLES.index(role)])


def _route(path: str) -> str:
    path = path.split("?")[0].replace("{t}", "{tenant}")
    return path.replace("{cid}", "{client_id}").replace("{sid}", "{session_id}")


@pytest.fixture
def tenants(ready_service: KeyService) -> KeyService:
    for name in ("a", "b"):
        ready_service.create_tenant(
            name, issuer=f"{PUBLIC_URL}/t/{name}", policy=Policy(alg=Alg.EdDSA), actor="test"
        )
    return ready_service


@pytest.fixture
def sessions(tenants: KeyService) -> dict[str, tuple[str, str]]:
    """An OAuth client and a session of subject ``bob`` on each of ``a`` and ``b``; for
    ``nosuch``, well-formed ids that name nothing. Maps tenant to (client_id, session_id)."""
    svc = SessionService(tenants)
    ids = {"nosuch": ("ktc_" + "0" * 24, "0" * 32)}
    for name in ("a", "b"):
        client, _ = svc.create_client(name, actor="test")
        sess, _ = svc.open_session(name, client_id=client.client_id, subject="bob", actor="test")
        ids[name] = (client.client_id, sess.session_id)
    return ids


def _state(service: KeyService, tenant: str) -> dict[str, Any]:
    """What the management API can change on a tenant, by the parts of ``MAY_CHANGE``."""
    svc = SessionService(service)
    clients = [c.to_dict() for c in svc.clients(tenant, include_revoked=True)]
    return {
        "keys": service.tenant(tenant).key_version,
        "clients": (clients, svc.policy(tenant).to_dict()),
        "sessions": [s.to_dict() for s in svc.sessions(tenant, include_ended=True, limit=MAX_PAGE)],
    }


def _token(api_keys: ApiKeyStore, role: str) -> dict[str, str]:
    _, token = api_keys.create(role, tenant=None if role == "admin" else "a", actor="test")
    return {"Authorization": f"Bearer {token}"}


def _kid(service: KeyService, tenant: str) -> str:
    try:
        _, ring = service.ring(tenant)
    except Exception:  # no such tenant: any well-formed kid
        return "k1"
    assert ring.next is not None
    return ring.next.kid


def _body(body: dict[str, Any] | None, cid: str) -> dict[str, Any] | None:
    if body is not None and body.get("key") == "PEM":
        return {**body, "key": _pem_b64()}
    if body is not None and body.get("client_id") == "{cid}":
        return {**body, "client_id": cid}
    return body


async def test_the_tables_name_every_management_route(client: httpx.AsyncClient) -> None:
    doc = (await client.get(f"{API}/openapi.json")).json()
    served = {
        (method.upper(), path)
        for path, methods in doc["paths"].items()
        if path.startswith(API + "/")
        for method in methods
    }
    assert served == ALL_OPERATIONS
    in_tables = {(m, API + _route(p)) for m, p, *_ in TENANT_ROWS} | {
        (m, API + p) for m, p, *_ in GLOBAL_ROWS
    }
    assert in_tables == ALL_OPERATIONS


@pytest.mark.parametrize(
    ("role", "target"),
    [
        pytest.param("admin", "a", id="admin-on-a"),
        pytest.param("admin", "b", id="admin-on-b"),
        pytest.param("admin", "nosuch", id="admin-on-nosuch"),
        pytest.param("manager", "a", id="manager-own"),
        pytest.param("manager", "b", id="manager-other"),
        pytest.param("manager", "nosuch", id="manager-nosuch"),
        pytest.param("signer", "a", id="signer-own"),
        pytest.param("signer", "b", id="signer-other"),
        pytest.param("signer", "nosuch", id="signer-nosuch"),
        pytest.param("viewer", "a", id="viewer-own"),
        pytest.param("viewer", "b", id="viewer-other"),
        pytest.param("viewer", "nosuch", id="viewer-nosuch"),
    ],
)
async def test_every_tenant_route_for_every_role(
    client: httpx.AsyncClient,
    tenants: KeyService,
    api_keys: ApiKeyStore,
    clock: FakeClock,
    sessions: dict[str, tuple[str, str]],
    role: str,
    target: str,
) -> None:
    headers = _token(api_keys, role)
    before = {t: _state(tenants, t) for t in ("a", "b")}
    cid, sid = sessions[target]
    for row in TENANT_ROWS:
        method, path, body = row[0], row[1], row[2]
        if role == "admin":
            want = ADMIN_ON_NOSUCH[path] if target == "nosuch" else _expected(row, role, 3)
        else:
            want = _expected(row, role, 3) if target == "a" else 403
        clock.advance(3600)  # past the next key's pre-publication, for the rotations
        url = API + path.format(t=target, kid=_kid(tenants, target), cid=cid, sid=sid)
        r = await client.request(method, url, headers=headers, json=_body(body, cid))
        detail = r.text[:300] if r.status_code >= 400 else "(body not shown: it may hold tokens)"
        assert r.status_code == want, f"{role} {method} {url}: {r.status_code} {detail}"
        if want == 403:
            assert r.json()["code"] == "forbidden"
    # A refused key changed nothing anywhere; an allowed one changed its target only.
    for t in ("a", "b"):
        after = _state(tenants, t)
        changed = {part for part in after if after[part] != before[t][part]}
        may_change = MAY_CHANGE[role] if t == target and (role == "admin" or t == "a") else set()
        assert changed == may_change, f"{role} on {target}: tenant {t} changed {changed}"


@pytest.mark.parametrize("role", ROLES)
async def test_global_routes_for_every_role(
    client: httpx.AsyncClient, tenants: KeyService, api_keys: ApiKeyStore, role: str
) -> None:
    headers = _token(api_keys, role)
    row_list, row_create, row_audit = GLOBAL_ROWS
    r = await client.get(f"{API}/tenants", headers=headers)
    assert r.status_code == _expected(row_list, role, 2), r.text
    if r.status_code == 200:
        names = sorted(t["name"] for t in r.json())
        assert names == (["a", "b", "default"] if role == "admin" else ["a"])
    r = await client.post(
        f"{API}/tenants", headers=headers, json={"name": "c", "policy": {"alg": "EdDSA"}}
    )
    assert r.status_code == _expected(row_create, role, 2), r.text
    assert ("c" in {t.name for t in tenants.tenants()}) == (role == "admin")
    r = await client.get(f"{API}/audit", headers=headers)
    assert r.status_code == _expected(row_audit, role, 2), r.text
    if r.status_code == 200:
        seen = {i["tenant"] for i in r.json()["items"]}
        if role == "admin":
            assert {"a", "b", "c"} <= seen
        else:
            assert seen == {"a"}


@pytest.mark.parametrize("role", ["manager", "signer", "viewer"])
@pytest.mark.parametrize("other", ["b", "nosuch"])
async def test_scoped_audit_filter_cannot_name_another_tenant(
    client: httpx.AsyncClient, tenants: KeyService, api_keys: ApiKeyStore, role: str, other: str
) -> None:
    headers = _token(api_keys, role)
    r = await client.get(f"{API}/audit", headers=headers, params={"tenant": other})
    assert r.status_code == 403
