"""The console's OAuth clients, sessions and session policy pages, in-process.

Rights as the sessions API has them, checked before the tenant is looked up; every action
audited through the sessions service as the signed-in key; a viewer's POST changes nothing.
"""

from __future__ import annotations

import re

import httpx
import pytest

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.sessions.model import AuthMethod
from keyturn.sessions.service import ClientCredentials, SessionService
from keyturn.store.apikeys import ApiKeyStore

from .conftest import PUBLIC_URL
from .test_admin import assert_secured, field, signed_in

pytestmark = pytest.mark.anyio


def actor_of(token: str) -> str:
    return f"api:{token.split('_')[1]}"


def shown(html: str, ident: str) -> str:
    m = re.search(rf'id="{ident}" class="token copy" readonly value="([^"]*)"', html)
    assert m is not None, f"no {ident}"
    return m.group(1)


@pytest.fixture
def acme(ready_service: KeyService) -> str:
    ready_service.create_tenant(
        "acme", issuer=f"{PUBLIC_URL}/t/acme", policy=Policy(alg=Alg.ES256), actor="test"
    )
    return "acme"


@pytest.fixture
def sessions(ready_service: KeyService) -> SessionService:
    return SessionService(ready_service)


def open_sessions(sessions: SessionService, tenant: str, *subjects: str) -> tuple[str, list[str]]:
    client, _ = sessions.create_client(tenant, actor="test")
    ids = [
        sessions.open_session(tenant, client_id=client.client_id, subject=s, actor="test")[
            0
        ].session_id
        for s in subjects
    ]
    return client.client_id, ids


def events(svc: KeyService, tenant: str, event: str) -> list[tuple[str, dict[str, object]]]:
    return [(r.actor, r.details) for r in svc.store.audit_records(tenant=tenant, event_name=event)]


# --- OAuth clients -----------------------------------------------------------------------------
async def test_manager_creates_rotates_and_revokes_a_client(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    ready_service: KeyService,
    sessions: SessionService,
    acme: str,
) -> None:
    _, token = api_keys.create("manager", tenant=acme, actor="test")
    await signed_in(client, token)
    tenant_page = await client.get("/admin/t/acme")
    assert 'href="/admin/t/acme/clients"' in tenant_page.text
    assert 'href="/admin/t/acme/sessions"' in tenant_page.text
    assert 'href="/admin/t/acme/session-policy"' in tenant_page.text
    page = await client.get("/admin/t/acme/clients")
    assert page.status_code == 200 and "No OAuth clients." in page.text
    assert 'for="oc-scope"' in page.text and 'for="oc-grant-refresh_token"' in page.text
    csrf = field(page.text, "csrf")
    form = {
        "csrf": csrf,
        "auth_method": "none",
        "grant_client_credentials": "yes",
        "description": "web <b>",
    }
    r = await client.post("/admin/t/acme/clients", data=form)
    assert r.status_code == 422
    assert "a public client (auth method none) cannot use client_credentials" in r.text
    assert sessions.clients(acme) == []
    form = {
        **form,
        "auth_method": "client_secret_basic",
        "scope": "read write",
        "grant_refresh_token": "yes",
    }
    r = await client.post("/admin/t/acme/clients", data=form)
    assert r.status_code == 201
    assert_secured(r)  # no-store: the secret page is never cached
    client_id, secret = shown(r.text, "new-client-id"), shown(r.text, "new-secret")
    assert secret.startswith("kts_")
    sessions.authenticate(acme, ClientCredentials(client_id, secret, AuthMethod.BASIC))
    listed = await client.get("/admin/t/acme/clients")
    assert secret not in listed.text and client_id in listed.text
    assert "web &lt;b&gt;" in listed.text
    ((actor, details),) = events(ready_service, acme, "oauth_client.created")
    assert actor == actor_of(token) and details["client_id"] == client_id
    # Rotate: a new secret shown once, the old one stops working.
    r = await client.post(f"/admin/t/acme/clients/{client_id}/rotate", data={"csrf": csrf})
    assert r.status_code == 200
    new_secret = shown(r.text, "new-secret")
    assert new_secret != secret
    sessions.authenticate(acme, ClientCredentials(client_id, new_secret, AuthMethod.BASIC))
    with pytest.raises(Exception, match="client"):
        sessions.authenticate(acme, ClientCredentials(client_id, secret, AuthMethod.BASIC))
    assert events(ready_service, acme, "oauth_client.secret_rotated") == [
        (actor_of(token), {"client_id": client_id})
    ]
    # Revoke: the client and its sessions end.
    sid = sessions.open_session(acme, client_id=client_id, subject="u1", actor="test")[0]
    r = await client.post(f"/admin/t/acme/clients/{client_id}/revoke", data={"csrf": csrf})
    assert r.status_code == 303
    after = await client.get("/admin/t/acme/clients")
    assert f"Revoked OAuth client {client_id} and its sessions." in after.text
    assert not sessions.client(acme, client_id).active
    assert not sessions.session(acme, sid.session_id).active
    ((actor, details),) = events(ready_service, acme, "oauth_client.revoked")
    assert actor == actor_of(token) and details["sessions_revoked"] == 1


async def test_viewer_sees_clients_but_changes_nothing(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    sessions: SessionService,
    acme: str,
) -> None:
    client_id, (sid,) = open_sessions(sessions, acme, "alice")
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/t/acme/clients")
    assert page.status_code == 200 and client_id in page.text
    assert "Create an OAuth client" not in page.text and "/revoke" not in page.text
    spage = await client.get("/admin/t/acme/sessions")
    assert spage.status_code == 200 and sid in spage.text and "Log out everywhere" not in spage.text
    ppage = await client.get("/admin/t/acme/session-policy")
    assert ppage.status_code == 200 and "Save session policy" not in ppage.text
    csrf = field(page.text, "csrf")
    form = {
        "csrf": csrf,
        "auth_method": "client_secret_basic",
        "grant_refresh_token": "yes",
        "subject": "alice",
        "confirm_subject": "alice",
        "access_ttl": "1m",
    }
    for path in (
        "/admin/t/acme/clients",
        f"/admin/t/acme/clients/{client_id}/rotate",
        f"/admin/t/acme/clients/{client_id}/revoke",
        f"/admin/t/acme/sessions/{sid}/revoke",
        "/admin/t/acme/sessions/logout",
        "/admin/t/acme/session-policy",
    ):
        r = await client.post(path, data=form)
        assert r.status_code == 403, path
    assert [c.client_id for c in sessions.clients(acme)] == [client_id]
    assert sessions.client(acme, client_id).secret_rotated_at is None
    assert sessions.session(acme, sid).active
    assert sessions.policy(acme).access_ttl == 15 * 60


async def test_scoped_key_learns_nothing_of_other_tenants(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, sessions: SessionService, acme: str
) -> None:
    open_sessions(sessions, "default", "bob")
    _, token = api_keys.create("manager", tenant=acme, actor="test")
    await signed_in(client, token)
    for path in ("clients", "sessions", "session-policy"):
        assert (await client.get(f"/admin/t/default/{path}")).status_code == 403
        # A tenant that does not exist is refused the same way: rights come first.
        assert (await client.get(f"/admin/t/nosuch/{path}")).status_code == 403
    csrf = field((await client.get("/admin/t/acme/clients")).text, "csrf")
    r = await client.post(
        "/admin/t/default/sessions/logout",
        data={"csrf": csrf, "subject": "bob", "confirm_subject": "bob"},
    )
    assert r.status_code == 403
    assert len(sessions.sessions("default", subject="bob")) == 1


async def test_no_csrf_no_action(
    client: httpx.AsyncClient, admin_token: str, sessions: SessionService, acme: str
) -> None:
    await signed_in(client, admin_token)
    r = await client.post("/admin/t/acme/clients", data={"auth_method": "client_secret_basic"})
    assert r.status_code == 403
    assert sessions.clients(acme) == []


# --- sessions ----------------------------------------------------------------------------------
async def test_sessions_filtered_revoked_and_logged_out_everywhere(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    ready_service: KeyService,
    sessions: SessionService,
    acme: str,
) -> None:
    _, (a1, a2, b1) = open_sessions(sessions, acme, "alice", "alice", "bob")
    _, token = api_keys.create("signer", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/t/acme/sessions")
    assert page.status_code == 200 and all(s in page.text for s in (a1, a2, b1))
    only_bob = await client.get("/admin/t/acme/sessions", params={"subject": "bob"})
    assert b1 in only_bob.text and a1 not in only_bob.text and a2 not in only_bob.text
    csrf = field(page.text, "csrf")
    r = await client.post(
        f"/admin/t/acme/sessions/{b1}/revoke", data={"csrf": csrf, "reason": "lost phone"}
    )
    assert r.status_code == 303
    assert f"Revoked session {b1} of bob." in (await client.get("/admin/t/acme/sessions")).text
    assert not sessions.session(acme, b1).active
    assert sessions.session(acme, a1).active
    assert events(ready_service, acme, "session.revoked") == [
        (
            actor_of(token),
            {"session_id": b1, "subject": "bob", "client_id": sessions.session(acme, b1).client_id},
        )
    ]
    # Log out everywhere: the subject typed twice, else nothing ends.
    for typed in ("", "Alice", "alic"):
        r = await client.post(
            "/admin/t/acme/sessions/logout",
            data={"csrf": csrf, "subject": "alice", "confirm_subject": typed},
        )
        assert r.status_code == 303
        assert (
            "type the subject &#39;alice&#39; again to confirm"
            in (await client.get("/admin/t/acme/sessions")).text
        )
        assert sessions.session(acme, a1).active and sessions.session(acme, a2).active
    r = await client.post(
        "/admin/t/acme/sessions/logout",
        data={"csrf": csrf, "subject": "alice", "confirm_subject": "alice", "reason": "breach"},
    )
    assert r.status_code == 303
    assert (
        "Logged alice out everywhere: 2 sessions."
        in (await client.get("/admin/t/acme/sessions")).text
    )
    assert not sessions.session(acme, a1).active and not sessions.session(acme, a2).active
    ((actor, details),) = events(ready_service, acme, "session.subject_revoked")
    assert actor == actor_of(token) and sorted(details["sessions"]) == sorted([a1, a2])  # type: ignore[type-var]
    ended = await client.get("/admin/t/acme/sessions", params={"ended": "1"})
    assert "breach" in ended.text and "lost phone" in ended.text


# --- session policy ----------------------------------------------------------------------------
async def test_manager_edits_the_session_policy(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    ready_service: KeyService,
    sessions: SessionService,
    acme: str,
) -> None:
    _, token = api_keys.create("manager", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/t/acme/session-policy")
    assert page.status_code == 200 and 'id="sp-now-access_ttl">15m<' in page.text
    assert 'for="sp-idle_ttl"' in page.text
    csrf = field(page.text, "csrf")
    r = await client.post(
        "/admin/t/acme/session-policy",
        data={"csrf": csrf, "idle_ttl": "100d", "absolute_ttl": "90d"},
    )
    assert r.status_code == 422 and "idle_ttl must not exceed absolute_ttl" in r.text
    assert 'value="100d"' in r.text  # the form keeps what was typed
    assert sessions.policy(acme).idle_ttl == 14 * 86400
    r = await client.post(
        "/admin/t/acme/session-policy",
        data={"csrf": csrf, "access_ttl": "5m", "idle_ttl": "7d", "reuse_grace": "0"},
    )
    assert r.status_code == 303
    assert "Session policy saved" in (await client.get("/admin/t/acme/session-policy")).text
    p = sessions.policy(acme)
    assert (p.access_ttl, p.idle_ttl, p.absolute_ttl, p.reuse_grace) == (
        300,
        7 * 86400,
        90 * 86400,
        0,
    )
    ((actor, details),) = events(ready_service, acme, "session_policy.changed")
    assert actor == actor_of(token) and details["new"] == p.to_dict()
