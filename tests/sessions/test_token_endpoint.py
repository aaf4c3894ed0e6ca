"""The token and revocation endpoints in-process (SQLite and PostgreSQL): the grants, the
RFC 6749 section 5.2 errors, form-only bodies, size bounds; a refused request changes nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.server.app import KeyturnApp
from keyturn.service import KeyService
from keyturn.sessions.service import SessionService

from ..server.conftest import PUBLIC_URL
from .conftest import REVOKE_URL, TOKEN_URL, Registered, token

pytestmark = pytest.mark.anyio


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def test_client_credentials_with_basic_and_post(
    client: httpx.AsyncClient, sessions: SessionService, ready_service: KeyService
) -> None:
    basic, basic_secret = sessions.create_client("default", actor="t", audience="api")
    post, post_secret = sessions.create_client(
        "default", actor="t", auth_method="client_secret_post", scope="read"
    )
    assert basic_secret is not None and post_secret is not None
    r = await token(
        client, {"grant_type": "client_credentials"}, _basic(basic.client_id, basic_secret)
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims, _ = ready_service.verify("default", body["access_token"], audience="api")
    assert claims["sub"] == basic.client_id and claims["iss"] == PUBLIC_URL
    r = await token(
        client,
        {
            "grant_type": "client_credentials",
            "client_id": post.client_id,
            "client_secret": post_secret,
            "scope": "read",
        },
    )
    assert r.status_code == 200 and r.json()["scope"] == "read"


async def test_refresh_through_the_endpoint_rotates(
    client: httpx.AsyncClient, sessions: SessionService, oauth_client: Registered
) -> None:
    _, first = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="alice", actor="app"
    )
    assert first.refresh_token is not None
    data = {"grant_type": "refresh_token", "refresh_token": first.refresh_token}
    r = await token(client, data, oauth_client.basic)
    assert r.status_code == 200, r.text
    new = r.json()["refresh_token"]
    assert new.startswith("ktr_") and new != first.refresh_token
    # Public app: client_id in the body, no secret.
    pub, _ = sessions.create_client(
        "default", actor="t", auth_method="none", grant_types=["refresh_token"]
    )
    _, ptok = sessions.open_session("default", client_id=pub.client_id, subject="bob", actor="a")
    assert ptok.refresh_token is not None
    r = await token(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": ptok.refresh_token,
            "client_id": pub.client_id,
        },
    )
    assert r.status_code == 200, r.text


async def test_per_tenant_endpoint_and_discovery(
    client: httpx.AsyncClient, sessions: SessionService, ready_service: KeyService
) -> None:
    ready_service.create_tenant(
        "acme", issuer=f"{PUBLIC_URL}/t/acme", policy=Policy(alg=Alg.ES256), actor="t"
    )
    acme, secret = sessions.create_client("acme", actor="t")
    assert secret is not None
    r = await client.post(
        "/t/acme/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(acme.client_id, secret),
    )
    assert r.status_code == 200, r.text
    claims, _ = ready_service.verify("acme", r.json()["access_token"])
    assert claims["iss"] == f"{PUBLIC_URL}/t/acme"
    # The acme client is unknown on the default tenant's endpoint.
    r = await token(client, {"grant_type": "client_credentials"}, _basic(acme.client_id, secret))
    assert r.status_code == 401
    for base in (PUBLIC_URL, f"{PUBLIC_URL}/t/acme"):
        path = base[len(PUBLIC_URL) :] + "/.well-known/openid-configuration"
        doc = (await client.get(path)).json()
        assert doc["token_endpoint"] == f"{base}/oauth/token"
        assert doc["revocation_endpoint"] == f"{base}/oauth/revoke"
        assert doc["grant_types_supported"] == ["client_credentials", "refresh_token"]
        assert doc["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]


def _state(sessions: SessionService) -> tuple[int, list[tuple[str, int, float | None]]]:
    # A refused presentation on a revoked session is audited (bounded), and is no change.
    audit = sum(
        r.event != "session.refresh_refused" for r in sessions.store.audit_records(limit=1000)
    )
    rows = [
        (s.session_id, s.generation, s.revoked_at)
        for s in sessions.sessions("default", include_ended=True)
    ]
    return audit, rows


# (what, method, path, body kwargs, headers kind, status, error)
BAD = [
    ("get", "GET", TOKEN_URL, {}, "basic", 405, "invalid_request"),
    (
        "json",
        "POST",
        TOKEN_URL,
        {"json": {"grant_type": "client_credentials"}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "no-content-type",
        "POST",
        TOKEN_URL,
        {"content": b"grant_type=client_credentials"},
        "basic",
        400,
        "invalid_request",
    ),
    ("missing-grant", "POST", TOKEN_URL, {"data": {"scope": "x"}}, "basic", 400, "invalid_request"),
    (
        "unknown-grant",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "password"}},
        "basic",
        400,
        "unsupported_grant_type",
    ),
    (
        "no-client",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "none",
        401,
        "invalid_client",
    ),
    (
        "wrong-secret",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "wrong",
        401,
        "invalid_client",
    ),
    (
        "bearer-not-basic",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "bearer",
        401,
        "invalid_client",
    ),
    (
        "malformed-basic",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "garbled",
        401,
        "invalid_client",
    ),
    (
        "post-for-basic-client",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "post",
        401,
        "invalid_client",
    ),
    (
        "two-methods",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials", "client_secret": "x"}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "refresh-missing",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token"}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "refresh-unknown",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "ktr_" + "A" * 43}},
        "basic",
        400,
        "invalid_grant",
    ),
    (
        "refresh-not-ours",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "eyJ.x.y"}},
        "basic",
        400,
        "invalid_grant",
    ),
    (
        "refresh-revoked",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "{revoked}"}},
        "basic",
        400,
        "invalid_grant",
    ),
    (
        "refresh-expired",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "{expired}"}},
        "basic",
        400,
        "invalid_grant",
    ),
    (
        "refresh-other-client",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "{live}"}},
        "other",
        400,
        "invalid_grant",
    ),
    (
        "bad-scope",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials", "scope": "admin"}},
        "basic",
        400,
        "invalid_scope",
    ),
    (
        "scope-on-refresh",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "refresh_token", "refresh_token": "{live}", "scope": "admin"}},
        "basic",
        400,
        "invalid_scope",
    ),
    (
        "refresh-only-client",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials"}},
        "other",
        400,
        "unauthorized_client",
    ),
    (
        "repeated",
        "POST",
        TOKEN_URL,
        {
            "content": b"grant_type=client_credentials&grant_type=refresh_token",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        "basic",
        400,
        "invalid_request",
    ),
    (
        "not-utf8",
        "POST",
        TOKEN_URL,
        {
            "content": b"grant_type=\xff",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        "basic",
        400,
        "invalid_request",
    ),
    (
        "query-string",
        "POST",
        TOKEN_URL + "?refresh_token=ktr_x",
        {"data": {"grant_type": "client_credentials"}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "too-many-fields",
        "POST",
        TOKEN_URL,
        {"data": {f"f{i}": "v" for i in range(40)}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "long-value",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "client_credentials", "scope": "a" * 5000}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "oversized",
        "POST",
        TOKEN_URL,
        {"data": {"grant_type": "x" * 9000}},
        "basic",
        413,
        "invalid_request",
    ),
    (
        "unknown-tenant",
        "POST",
        "/t/nosuch/oauth/token",
        {"data": {"grant_type": "client_credentials"}},
        "basic",
        404,
        "invalid_request",
    ),
    ("revoke-get", "GET", REVOKE_URL, {}, "basic", 405, "invalid_request"),
    (
        "revoke-missing",
        "POST",
        REVOKE_URL,
        {"data": {"token_type_hint": "refresh_token"}},
        "basic",
        400,
        "invalid_request",
    ),
    (
        "revoke-no-client",
        "POST",
        REVOKE_URL,
        {"data": {"token": "{live}"}},
        "none",
        401,
        "invalid_client",
    ),
    (
        "revoke-access-token",
        "POST",
        REVOKE_URL,
        {"data": {"token": "{access}"}},
        "basic",
        400,
        "unsupported_token_type",
    ),
    (
        "revoke-json",
        "POST",
        REVOKE_URL,
        {"json": {"token": "{live}"}},
        "basic",
        400,
        "invalid_request",
    ),
]


@pytest.fixture
def fixtures(sessions: SessionService, oauth_client: Registered) -> dict[str, str]:
    other, other_secret = sessions.create_client(
        "default", actor="t", grant_types=["refresh_token"]
    )
    assert other_secret is not None
    sessions.set_policy("default", actor="t", idle_ttl=100)
    _, live = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="a", actor="t"
    )
    s2, revoked = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="b", actor="t"
    )
    sessions.revoke_session("default", s2.session_id, actor="t")
    clock = sessions.clock
    _, expired = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="c", actor="t"
    )
    clock.advance(101)  # type: ignore[attr-defined]
    _, live = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="a", actor="t"
    )
    return {
        "{live}": live.refresh_token or "",
        "{revoked}": revoked.refresh_token or "",
        "{expired}": expired.refresh_token or "",
        "{access}": live.access_token,
        "other_id": other.client_id,
        "other_secret": other_secret,
    }


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "auth", "status", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD],
)
async def test_bad_requests_get_a_clear_rfc_error_and_change_nothing(
    client: httpx.AsyncClient,
    sessions: SessionService,
    oauth_client: Registered,
    fixtures: dict[str, str],
    method: str,
    path: str,
    kwargs: dict[str, object],
    auth: str,
    status: int,
    error: str,
) -> None:
    headers = {
        "basic": oauth_client.basic,
        "none": {},
        "wrong": _basic(oauth_client.client_id, "kts_wrong"),
        "bearer": {"Authorization": "Bearer kt_x"},
        "garbled": {"Authorization": "Basic !!!"},
        "other": _basic(fixtures["other_id"], fixtures["other_secret"]),
        "post": {},
    }[auth]
    kw = dict(kwargs)
    if "data" in kw:
        data = {k: fixtures.get(v, v) for k, v in kw["data"].items()}  # type: ignore[attr-defined]
        if auth == "post":
            data.update(client_id=oauth_client.client_id, client_secret=oauth_client.secret)
        kw["data"] = data
    if "json" in kw:
        kw["json"] = {k: fixtures.get(v, v) for k, v in kw["json"].items()}  # type: ignore[attr-defined]
    kw["headers"] = {**headers, **kw.get("headers", {})}  # type: ignore[dict-item]
    before = _state(sessions)
    r = await client.request(method, path, **kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and isinstance(body["error_description"], str)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    if error == "invalid_client":
        assert r.headers["www-authenticate"] == 'Basic realm="keyturn"'
    if status == 405:
        assert r.headers["allow"] == "POST"
    assert _state(sessions) == before
    for secret in (oauth_client.secret, fixtures["{live}"]):
        assert secret not in r.text


async def test_json_is_refused_with_a_hint(
    client: httpx.AsyncClient, oauth_client: Registered
) -> None:
    r = await client.post(
        TOKEN_URL, json={"grant_type": "client_credentials"}, headers=oauth_client.basic
    )
    assert "application/x-www-form-urlencoded" in r.json()["error_description"]
    assert "JSON" in r.json()["error_description"]


async def test_chunked_oversized_body_is_refused(
    client: httpx.AsyncClient, oauth_client: Registered
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type=client_credentials&scope="
        for _ in range(10):
            yield b"a" * 1024

    r = await client.post(
        TOKEN_URL,
        content=chunks(),
        headers={**oauth_client.basic, "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and r.json()["error"] == "invalid_request"


async def test_rfc7009_revocation_ends_the_session(
    client: httpx.AsyncClient, sessions: SessionService, oauth_client: Registered
) -> None:
    sess, tokens = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="a", actor="t"
    )
    r = await client.post(REVOKE_URL, data={"token": "ktr_unknown"}, headers=oauth_client.basic)
    assert r.status_code == 200  # unknown tokens are not an error (RFC 7009 section 2.2)
    assert tokens.refresh_token is not None
    r = await client.post(
        REVOKE_URL,
        data={"token": tokens.refresh_token, "token_type_hint": "refresh_token"},
        headers=oauth_client.basic,
    )
    assert r.status_code == 200
    assert not sessions.session("default", sess.session_id).active
    r = await token(
        client,
        {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
        oauth_client.basic,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_store_outage_is_503_not_500(
    app: KeyturnApp, oauth_client: Registered, sessions: SessionService
) -> None:
    _, tokens = sessions.open_session(
        "default", client_id=oauth_client.client_id, subject="a", actor="t"
    )
    app.service.store.engine.dispose()
    from keyturn.errors import StoreUnavailableError

    def down(statement: str) -> None:
        raise StoreUnavailableError("database unavailable: test")

    app.service.store.fault_hook = down
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        r = await token(
            c,
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token or ""},
            oauth_client.basic,
        )
    app.service.store.fault_hook = None
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
