"""Against a real ``keyturn serve`` over loopback: Authlib's OAuth 2.0 client, unchanged, and the
SuperTokens story (a client looping over a protected service sees zero failures through a
``revoke-all``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..server.live import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = LiveServer.start(tmp_path_factory.mktemp("sessions-live"))
    try:
        yield s
    finally:
        s.stop()


def _api(server: LiveServer, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, f"{server.url}/api/v1{path}", headers=server.admin, timeout=30, **kw)
    assert r.status_code < 300, r.text
    return r.json()


def _discovery(server: LiveServer) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/.well-known/openid-configuration", timeout=10)
    doc: dict[str, Any] = r.json()
    return doc


@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
def test_authlib_client_credentials_then_refresh(server: LiveServer) -> None:
    """Authlib's own client (httpx flavour) with no keyturn code: client_credentials, then a
    refresh of a session the app opened, then the rotated token again (refused)."""
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import OAuth2Client

    doc = _discovery(server)
    token_endpoint = doc["token_endpoint"]
    assert token_endpoint == f"{server.url}/oauth/token"
    assert "client_credentials" in doc["grant_types_supported"]
    created = _api(server, "POST", "/tenants/default/oauth-clients", json={"audience": "api"})
    cid, secret = created["client_id"], created["client_secret"]

    with OAuth2Client(cid, secret, token_endpoint_auth_method="client_secret_basic") as oauth:
        token = oauth.fetch_token(token_endpoint, grant_type="client_credentials")
        assert token["token_type"].lower() == "bearer" and token["expires_in"] == 900
        assert "refresh_token" not in token
        check = _api(
            server,
            "POST",
            "/tenants/default/tokens/verify",
            json={"token": token["access_token"], "audience": "api"},
        )
        assert check["valid"] and check["claims"]["sub"] == cid

        # The app's backend opens a session for a user it authenticated (plain HTTP).
        opened = _api(
            server,
            "POST",
            "/tenants/default/sessions",
            json={"client_id": cid, "subject": "alice"},
        )
        first = opened["refresh_token"]
        renewed = oauth.refresh_token(token_endpoint, refresh_token=first)
        assert renewed["refresh_token"] != first
        check = _api(
            server,
            "POST",
            "/tenants/default/tokens/verify",
            json={"token": renewed["access_token"], "audience": "api"},
        )
        assert check["claims"]["sub"] == "alice"
        again = oauth.refresh_token(token_endpoint, refresh_token=renewed["refresh_token"])
        assert again["refresh_token"] not in (first, renewed["refresh_token"])

    # client_secret_post, and the RFC 6749 error Authlib surfaces for a used token.
    post = _api(
        server,
        "POST",
        "/tenants/default/oauth-clients",
        json={"token_endpoint_auth_method": "client_secret_post"},
    )
    with OAuth2Client(
        post["client_id"], post["client_secret"], token_endpoint_auth_method="client_secret_post"
    ) as oauth:
        assert oauth.fetch_token(token_endpoint, grant_type="client_credentials")["access_token"]
    with OAuth2Client(cid, secret) as oauth:
        _api(server, "PATCH", "/tenants/default/session-policy", json={"reuse_grace": 0})
        with pytest.raises(OAuthError) as err:
            oauth.refresh_token(token_endpoint, refresh_token=first)
        assert err.value.error == "invalid_grant"
        _api(server, "PATCH", "/tenants/default/session-policy", json={"reuse_grace": 5})


def _protected_service(server: LiveServer, denials: list[str]) -> tuple[Any, Any]:
    """A Starlette app behind keyturn's ASGI middleware; the verifier subscribes to the feed."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from keyturn.verifier import AsyncVerifier, RevocationFeed
    from keyturn.verifier.asgi import BearerAuthMiddleware, get_claims

    verifier = AsyncVerifier(
        issuer=server.url, audience="api", algorithms=["RS256"], revocations=RevocationFeed()
    )

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"for": get_claims(request)["sub"]})

    inner = BearerAuthMiddleware(Starlette(routes=[Route("/orders", orders)]), verifier=verifier)

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                for k, v in message["headers"]:
                    if k == b"www-authenticate":
                        denials.append(v.decode())
            await send(message)

        await inner(scope, receive, watch)

    return verifier, counting


def test_zero_failed_requests_through_revoke_all(server: LiveServer) -> None:
    """The SuperTokens promise: revoke every key of the tenant while four tasks loop over a
    protected service; the one wave of 401 try_refresh is absorbed by one refresh (single
    flight) and a retry, so no user request fails."""
    from keyturn.client import RefreshingAuth, TokenPair

    app = _api(
        server,
        "POST",
        "/tenants/default/oauth-clients",
        json={
            "token_endpoint_auth_method": "none",
            "grant_types": ["refresh_token"],
            "audience": "api",
        },
    )
    opened = _api(
        server,
        "POST",
        "/tenants/default/sessions",
        json={"client_id": app["client_id"], "subject": "alice"},
    )
    pair = TokenPair(
        opened["access_token"], opened["refresh_token"], time.time() + opened["expires_in"]
    )
    auth = RefreshingAuth(
        pair, token_url=_discovery(server)["token_endpoint"], client_id=app["client_id"]
    )
    denials: list[str] = []
    verifier, service = _protected_service(server, denials)
    statuses: list[int] = []
    revoked = threading.Event()

    def revoke_all() -> None:
        _api(
            server,
            "POST",
            "/tenants/default/keys/revoke-all",
            json={"reason": "drill: key store leaked"},
        )
        revoked.set()

    async def main() -> None:
        mounts = {"http://service.test": httpx.ASGITransport(app=service)}
        warmed = asyncio.Event()
        async with verifier, httpx.AsyncClient(auth=auth, mounts=mounts, timeout=30) as http:

            async def user() -> None:
                while True:
                    r = await http.get("http://service.test/orders")
                    statuses.append(r.status_code)
                    if len(statuses) >= 40:
                        warmed.set()
                    if revoked.is_set() and auth.refreshes >= 1 and len(statuses) > 200:
                        return
                    await asyncio.sleep(0.005)  # a user's pace, not a busy loop

            async def operator() -> None:
                await warmed.wait()
                await asyncio.to_thread(revoke_all)

            await asyncio.wait_for(asyncio.gather(operator(), *(user() for _ in range(4))), 60)

    asyncio.run(main())
    assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    assert auth.refreshes == 1  # four tasks hit the 401 wave; one refresh served them all
    assert denials, "revoke-all never reached the verifier: the story did not happen"
    assert all('keyturn_action="try_refresh"' in d for d in denials), denials
    assert auth.tokens.refresh_token != opened["refresh_token"]


def test_reuse_of_a_stolen_token_is_audited_over_http(server: LiveServer, tmp_path: Path) -> None:
    """The thief refreshes with a used token: invalid_grant, session revoked; the legitimate
    client's next refresh gets invalid_grant too; the audit shows both."""
    app = _api(
        server,
        "POST",
        "/tenants/default/oauth-clients",
        json={"token_endpoint_auth_method": "none", "grant_types": ["refresh_token"]},
    )
    cid = app["client_id"]
    _api(server, "PATCH", "/tenants/default/session-policy", json={"reuse_grace": 0})
    try:
        opened = _api(
            server, "POST", "/tenants/default/sessions", json={"client_id": cid, "subject": "bob"}
        )
        url = f"{server.url}/oauth/token"

        def refresh(tok: str) -> httpx.Response:
            data = {"grant_type": "refresh_token", "refresh_token": tok, "client_id": cid}
            return httpx.post(url, data=data, timeout=10)

        stolen = opened["refresh_token"]
        legit = refresh(stolen).json()["refresh_token"]  # the client rotates; the thief kept it
        thief = refresh(stolen)
        assert thief.status_code == 400 and thief.json()["error"] == "invalid_grant"
        victim = refresh(legit)
        assert victim.status_code == 400 and victim.json()["error"] == "invalid_grant"
        sid = opened["session"]["session_id"]
        audit = _api(server, "GET", "/audit?tenant=default&limit=20")["items"]
        mine = [a for a in audit if a["details"].get("session_id") == sid]
        assert [a["event"] for a in mine][:2] == [
            "session.refresh_refused",
            "session.reuse_detected",
        ]
        assert _api(server, "GET", f"/tenants/default/sessions/{sid}")["revoked_reason"] == (
            "refresh token reuse detected"
        )
    finally:
        _api(server, "PATCH", "/tenants/default/session-policy", json={"reuse_grace": 5})
