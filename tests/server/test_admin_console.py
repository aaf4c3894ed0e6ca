"""The console's lifecycle pages in-process: keys, import, policy, tenants, API keys, audit.

Rights as the API's table says them, every action audited as the signed-in key, on SQLite and
PostgreSQL (the ``service`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import update

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyState, Policy
from keyturn.server.app import KeyturnApp
from keyturn.service import KeyService
from keyturn.store import schema as s
from keyturn.store.apikeys import ApiKeyStore

from .conftest import PUBLIC_URL
from .test_admin import assert_secured, field, signed_in

pytestmark = pytest.mark.anyio


def ring_states(svc: KeyService, tenant: str = "default") -> dict[str, KeyState]:
    _, ring = svc.ring(tenant)
    return {k.kid: k.state for k in ring.keys}


def kid_in(svc: KeyService, state: KeyState, tenant: str = "default") -> str:
    return next(k for k, st in ring_states(svc, tenant).items() if st == state)


def actor_of(token: str) -> str:
    return f"api:{token.split('_')[1]}"


async def csrf_of(client: httpx.AsyncClient, path: str = "/admin/") -> str:
    return field((await client.get(path)).text, "csrf")


@pytest.fixture
async def other_client(app: KeyturnApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        yield c


@pytest.fixture
def acme(ready_service: KeyService) -> str:
    ready_service.create_tenant(
        "acme", issuer=f"{PUBLIC_URL}/t/acme", policy=Policy(alg=Alg.ES256), actor="test"
    )
    return "acme"


# --- keys ------------------------------------------------------------------------------------
async def test_revoke_one_previous_key_needs_confirmation_and_is_audited(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    ready_service.rotate("default", actor="test")
    prev = kid_in(ready_service, KeyState.PREVIOUS)
    await signed_in(client, admin_token)
    page = await client.get(f"/admin/t/default/keys/{prev}")
    assert page.status_code == 200
    assert f'action="/admin/t/default/keys/{prev}/revoke"' in page.text
    csrf = field(page.text, "csrf")
    url = f"/admin/t/default/keys/{prev}/revoke"
    r = await client.post(url, data={"csrf": csrf, "reason": "lost laptop"})
    assert r.status_code == 303
    assert "tick the confirmation box" in (await client.get("/admin/t/default")).text
    assert ring_states(ready_service)[prev] == KeyState.PREVIOUS
    r = await client.post(url, data={"csrf": csrf, "reason": "lost laptop", "confirm": "yes"})
    assert r.status_code == 303
    shown = await client.get("/admin/t/default")
    assert f"Revoked {prev} (was previous)" in shown.text
    assert ring_states(ready_service)[prev] == KeyState.REVOKED
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert prev not in {k["kid"] for k in jwks["keys"]}
    # The key's page lists its records and the rotation that made it previous.
    key_page = await client.get(f"/admin/t/default/keys/{prev}")
    audit_part = key_page.text.split("Audit records of this key")[1]
    assert "key.revoked" in audit_part and "key.rotated" in audit_part
    assert "key.created" in audit_part
    rec = ready_service.store.audit_records(tenant="default", kid=prev, event_name="key.revoked")
    assert rec[0].actor == actor_of(admin_token) and rec[0].reason == "lost laptop"


async def test_revoke_all_needs_the_tenant_name_typed(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    before = ring_states(ready_service)
    csrf = await csrf_of(client, "/admin/t/default")
    for typed in ("", "Default", "defaul"):
        r = await client.post(
            "/admin/t/default/revoke-all",
            data={"csrf": csrf, "reason": "store leaked", "confirm_name": typed},
        )
        assert r.status_code == 303
        assert (
            "type the tenant&#39;s name &#39;default&#39;"
            in (await client.get("/admin/t/default")).text
        )
        assert ring_states(ready_service) == before
    r = await client.post(
        "/admin/t/default/revoke-all",
        data={"csrf": csrf, "reason": "store leaked", "confirm_name": "default"},
    )
    assert r.status_code == 303
    after = ring_states(ready_service)
    assert all(after[k] == KeyState.REVOKED for k in before)
    assert sorted(st for k, st in after.items() if k not in before) == [
        KeyState.CURRENT,
        KeyState.NEXT,
    ]
    assert "Revoked all 2 published keys" in (await client.get("/admin/t/default")).text


async def test_import_a_pem_upload(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService, acme: str
) -> None:
    await signed_in(client, admin_token)
    csrf = await csrf_of(client, "/admin/t/acme")
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    url = "/admin/t/acme/import"
    # No CSRF token: refused before anything is read into the ring.
    r = await client.post(url, data={"as": "next"}, files={"file": ("k.pem", pem)})
    assert r.status_code == 403
    r = await client.post(url, data={"csrf": csrf, "as": "next"})  # urlencoded, no file
    assert r.status_code == 415
    big = b"x" * (61 * 1024)
    r = await client.post(url, data={"csrf": csrf}, files={"file": ("big.pem", big)})
    assert r.status_code == 413
    before = set(ring_states(ready_service, acme))
    # acme has a next key: importing as next over it is refused unless the box is ticked,
    # and the page names the key that would be destroyed (issue #14).
    (old_next,) = [k for k, s in ring_states(ready_service, acme).items() if s == KeyState.NEXT]
    r = await client.post(
        url, data={"csrf": csrf, "as": "next", "format": ""}, files={"file": ("k.pem", pem)}
    )
    assert r.status_code == 303
    page = (await client.get("/admin/t/acme")).text
    assert "Import refused" in page and old_next in page
    assert set(ring_states(ready_service, acme)) == before
    r = await client.post(
        url,
        data={"csrf": csrf, "as": "next", "format": "", "replace_next": "yes"},
        files={"file": ("k.pem", pem)},
    )
    assert r.status_code == 303
    assert ring_states(ready_service, acme)[old_next] == KeyState.RETIRED
    new = set(ring_states(ready_service, acme)) - before
    assert len(new) == 1
    kid = new.pop()
    assert ring_states(ready_service, acme)[kid] == KeyState.NEXT
    assert f"Imported {kid} as next." in (await client.get("/admin/t/acme")).text
    rec = ready_service.store.audit_records(tenant=acme, event_name="key.imported")
    assert rec[0].actor == actor_of(admin_token)
    # An RSA key on an ES256 tenant: refused, with the reason on the page.
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    r = await client.post(
        url, data={"csrf": csrf, "as": "next"}, files={"file": ("r.pem", rsa_pem)}
    )
    assert r.status_code == 303
    assert "Import refused" in (await client.get("/admin/t/acme")).text


async def test_key_page_and_jwk_download(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, ready_service: KeyService, acme: str
) -> None:
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    kid = kid_in(ready_service, KeyState.CURRENT, acme)
    page = await client.get(f"/admin/t/acme/keys/{kid}")
    assert page.status_code == 200
    assert_secured(page)
    assert "equals the kid" in page.text and "/revoke" not in page.text  # viewer: read-only
    assert "key.created" in page.text
    r = await client.get(f"/admin/t/acme/keys/{kid}/jwk")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk+json"
    assert r.headers["content-disposition"] == f'attachment; filename="acme-{kid}.jwk.json"'
    jwk = r.json()
    assert jwk["kid"] == kid and "d" not in jwk
    other = kid_in(ready_service, KeyState.CURRENT)
    assert (await client.get(f"/admin/t/default/keys/{other}")).status_code == 403
    assert (await client.get(f"/admin/t/default/keys/{other}/jwk")).status_code == 403
    assert (await client.get("/admin/t/acme/keys/nope")).status_code == 404


# --- policy ----------------------------------------------------------------------------------
async def test_policy_is_checked_before_saving(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/t/default/policy")
    assert page.status_code == 200
    csrf = field(page.text, "csrf")
    url = "/admin/t/default/policy"
    # Check: R = 5m is shorter than C + S = 10m + 1m; shown with the numbers, nothing saved.
    r = await client.post(url, data={"csrf": csrf, "op": "check", "rotation_period": "5m"})
    assert r.status_code == 200
    rule = "pre-publication: the rotation period R=5m is shorter than C+S=11m"
    assert rule in r.text
    assert ready_service.tenant("default").policy.rotation_period == 30 * 86400
    r = await client.post(url, data={"csrf": csrf, "op": "save", "rotation_period": "5m"})
    assert r.status_code == 422
    assert rule in r.text and "Not saved" in r.text
    assert 'value="5m"' in r.text  # the form keeps what was typed
    assert ready_service.tenant("default").policy.rotation_period == 30 * 86400
    # A safe change: the preview shows the new plan, then saving applies it.
    r = await client.post(url, data={"csrf": csrf, "op": "check", "rotation_period": "7d"})
    assert "Every timing rule holds." in r.text and "<td>in 7d</td>" in r.text
    r = await client.post(url, data={"csrf": csrf, "op": "save", "rotation_period": "7d"})
    assert r.status_code == 303
    assert ready_service.tenant("default").policy.rotation_period == 7 * 86400
    assert (
        "Policy of default saved: rotation_period." in (await client.get("/admin/t/default")).text
    )
    rec = ready_service.store.audit_records(tenant="default", event_name="policy.changed")
    assert rec[0].actor == actor_of(admin_token)
    # Forced past the rule: saved, flagged and audited.
    r = await client.post(
        url, data={"csrf": csrf, "op": "save", "rotation_period": "5m", "force": "yes"}
    )
    assert r.status_code == 303
    assert ready_service.tenant("default").policy_forced
    assert ready_service.store.audit_records(tenant="default", event_name="policy.forced")
    r = await client.post(url, data={"csrf": csrf, "op": "save", "token_ttl": "soon"})
    assert r.status_code == 422 and "T: longest token lifetime: invalid duration" in r.text


async def test_automatic_rotation_turned_off_and_on_from_the_policy_page(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    # Issue #16 (tenants: disable/enable automatic rotation), on #14's policy field.
    await signed_in(client, admin_token)
    url = "/admin/t/default/policy"
    page = await client.get(url)
    assert '<option value="on" selected>' in page.text
    csrf = field(page.text, "csrf")
    r = await client.post(url, data={"csrf": csrf, "op": "save", "auto_rotate": "off"})
    assert r.status_code == 303
    assert ready_service.tenant("default").policy.auto_rotate is False
    assert "Policy of default saved: auto_rotate." in (await client.get("/admin/t/default")).text
    rec = ready_service.store.audit_records(tenant="default", event_name="policy.changed")
    assert rec[0].actor == actor_of(admin_token)
    assert '<option value="off" selected>' in (await client.get(url)).text
    r = await client.post(url, data={"csrf": csrf, "op": "save", "auto_rotate": "sometimes"})
    assert r.status_code == 422 and "automatic rotation: on or off" in r.text
    assert ready_service.tenant("default").policy.auto_rotate is False
    r = await client.post(url, data={"csrf": csrf, "op": "save", "auto_rotate": "on"})
    assert r.status_code == 303
    assert ready_service.tenant("default").policy.auto_rotate is True


async def test_viewer_gets_no_policy_form(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str
) -> None:
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    assert (await client.get("/admin/t/acme/policy")).status_code == 403
    csrf = await csrf_of(client)
    r = await client.post(
        "/admin/t/acme/policy", data={"csrf": csrf, "op": "save", "rotation_period": "7d"}
    )
    assert r.status_code == 403


# --- tenants ---------------------------------------------------------------------------------
async def test_admin_creates_a_tenant_with_its_rules_checked(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    csrf = await csrf_of(client)
    base = {"csrf": csrf, "alg": "ES256", "token_ttl": "1h", "jwks_max_age": "10m"}
    r = await client.post("/admin/tenants", data={**base, "name": "Bad_Name"})
    assert r.status_code == 422 and "invalid tenant name" in r.text
    r = await client.post(
        "/admin/tenants", data={**base, "name": "billing", "rotation_period": "5m"}
    )
    assert r.status_code == 422
    assert "pre-publication: the rotation period R=5m is shorter than C+S=11m" in r.text
    r = await client.post(
        "/admin/tenants", data={**base, "name": "billing", "rotation_period": "7d"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/t/billing"
    t = ready_service.tenant("billing")
    assert t.issuer == f"{PUBLIC_URL}/t/billing" and t.policy.alg == Alg.ES256
    assert "Created tenant billing" in (await client.get("/admin/t/billing")).text
    rec = ready_service.store.audit_records(tenant="billing", event_name="tenant.created")
    assert rec[0].actor == actor_of(admin_token)
    page = await client.get("/admin/t/billing")
    for link in ("jwks.json", "openid-configuration", "revocations.json"):
        assert 'href="/t/billing/' in page.text and link in page.text


async def test_manager_cannot_create_tenants_or_see_api_keys(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str, ready_service: KeyService
) -> None:
    _, token = api_keys.create("manager", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/")
    assert 'action="/admin/tenants"' not in page.text and "/admin/apikeys" not in page.text
    csrf = field(page.text, "csrf")
    r = await client.post("/admin/tenants", data={"csrf": csrf, "name": "sneaky"})
    assert r.status_code == 403
    assert "sneaky" not in {t.name for t in ready_service.tenants()}
    assert (await client.get("/admin/apikeys")).status_code == 403
    r = await client.post("/admin/apikeys", data={"csrf": csrf, "role": "admin"})
    assert r.status_code == 403


# --- API keys --------------------------------------------------------------------------------
async def test_api_keys_created_shown_once_and_revoked(
    client: httpx.AsyncClient, admin_token: str, api_keys: ApiKeyStore, acme: str
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/apikeys")
    assert page.status_code == 200
    csrf = field(page.text, "csrf")
    r = await client.post(
        "/admin/apikeys",
        data={"csrf": csrf, "role": "viewer", "tenant": "", "description": "x"},
    )
    assert r.status_code == 422 and "a viewer key acts on one tenant" in r.text
    r = await client.post(
        "/admin/apikeys",
        data={"csrf": csrf, "role": "viewer", "tenant": acme, "description": "dash <b>"},
    )
    assert r.status_code == 201
    assert_secured(r)  # no-store: the token page is never cached
    token = field(r.text.replace("readonly value=", 'name="new" value='), "new")
    assert token.startswith("kt_") and api_keys.authenticate(token) is not None
    key_id = token.split("_")[1]
    listed = await client.get("/admin/apikeys")
    assert token not in listed.text and key_id in listed.text
    assert "dash &lt;b&gt;" in listed.text
    r = await client.post(f"/admin/apikeys/{key_id}/revoke", data={"csrf": csrf})
    assert r.status_code == 303
    assert api_keys.authenticate(token) is None
    assert f"Revoked API key {key_id} (viewer)." in (await client.get("/admin/apikeys")).text
    # Revoking the key this session stands on signs it out.
    own = admin_token.split("_")[1]
    r = await client.post(f"/admin/apikeys/{own}/revoke", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    assert (await client.get("/admin/")).status_code == 303


# --- audit -----------------------------------------------------------------------------------
async def test_audit_filters_paging_and_scope(
    client: httpx.AsyncClient,
    other_client: httpx.AsyncClient,
    admin_token: str,
    api_keys: ApiKeyStore,
    ready_service: KeyService,
    acme: str,
) -> None:
    for i in range(55):
        ready_service.rotate(acme, actor="cron", reason=f"drill {i}")
    await signed_in(client, admin_token)
    page = await client.get("/admin/audit", params={"tenant": acme, "event": "key.rotated"})
    assert page.status_code == 200
    assert page.text.count('<tr id="audit-') == 50
    assert "drill 54" in page.text and "drill 4<" not in page.text
    older = page.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    page2 = await client.get(older.replace("&amp;", "&"))
    assert page2.text.count('<tr id="audit-') == 5 and "drill 0" in page2.text
    assert 'rel="next"' not in page2.text
    r = await client.get("/admin/audit", params={"actor": "cron", "event": "key.rotated"})
    assert r.text.count('<tr id="audit-') == 50
    r = await client.get("/admin/audit", params={"actor": "nobody"})
    assert "No audit records." in r.text
    assert (await client.get("/admin/audit", params={"since": "yesterday"})).status_code == 422
    r = await client.get("/admin/audit", params={"since": "2100-01-01T00:00"})
    assert "No audit records." in r.text
    r = await client.get("/admin/audit", params={"check": "1"})
    assert "Audit chain intact" in r.text
    with ready_service.store.write() as tx:
        tx.conn.execute(update(s.audit).where(s.audit.c.reason == "drill 7").values(reason="x"))
    r = await client.get("/admin/audit", params={"check": "1"})
    assert "The audit chain is broken" in r.text and "contents do not match its hash" in r.text
    # A scoped key reads its own tenant's records only, whatever it asks for.
    _, token = api_keys.create("viewer", tenant="default", actor="test")
    await signed_in(other_client, token)
    r = await other_client.get("/admin/audit", params={"tenant": acme})
    assert r.status_code == 200 and "drill" not in r.text and "tenant.created" in r.text
    assert "Check the hash chains" not in r.text
    assert "The audit chain" not in (await other_client.get("/admin/audit?check=1")).text


async def test_signer_has_no_audit(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str
) -> None:
    _, token = api_keys.create("signer", tenant=acme, actor="test")
    await signed_in(client, token)
    assert (await client.get("/admin/audit")).status_code == 403
    assert "/admin/audit" not in (await client.get("/admin/")).text


# --- the picture on the tenant page ----------------------------------------------------------
async def test_tenant_page_draws_the_timeline(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    ready_service.rotate("default", actor="test")
    prev = kid_in(ready_service, KeyState.PREVIOUS)
    ready_service.revoke("default", prev, reason="<script>x</script>", actor="test")
    await signed_in(client, admin_token)
    r = await client.get("/admin/t/default")
    svg = r.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in svg
    assert svg.count('<g class="bar"') == 4  # revoked, current, next, and the plan's new key
    assert svg.count('class="revoked"') == 1
    assert "&lt;script&gt;x&lt;/script&gt;" in svg and "<script" not in r.text
    assert f'href="/admin/t/default/keys/{prev}"' in svg


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/admin/t/acme/rotate", id="rotate"),
        pytest.param("/admin/t/acme/rotate-and-revoke", id="rotate-and-revoke"),
        pytest.param("/admin/t/acme/revoke-all", id="revoke-all"),
        pytest.param("/admin/t/acme/keys/KID/revoke", id="revoke-key"),
        pytest.param("/admin/t/acme/policy", id="policy"),
        pytest.param("/admin/tenants", id="create-tenant"),
        pytest.param("/admin/apikeys", id="create-apikey"),
    ],
)
async def test_a_viewer_changes_nothing(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    ready_service: KeyService,
    acme: str,
    path: str,
) -> None:
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    csrf = await csrf_of(client)
    before = ring_states(ready_service, acme)
    kid = kid_in(ready_service, KeyState.NEXT, acme)
    keys_before = len(api_keys.list())
    form = {
        "csrf": csrf,
        "current": kid_in(ready_service, KeyState.CURRENT, acme),
        "reason": "r",
        "confirm": "yes",
        "confirm_name": acme,
        "op": "save",
        "rotation_period": "7d",
        "name": "other",
        "role": "admin",
    }
    r = await client.post(path.replace("KID", kid), data=form)
    assert r.status_code == 403
    assert_secured(r)
    assert ring_states(ready_service, acme) == before
    assert ready_service.tenant(acme).policy.rotation_period == 30 * 86400
    assert "other" not in {t.name for t in ready_service.tenants()}
    assert len(api_keys.list()) == keys_before


async def test_a_viewer_cannot_import(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, ready_service: KeyService, acme: str
) -> None:
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    csrf = await csrf_of(client)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    before = ring_states(ready_service, acme)
    r = await client.post(
        "/admin/t/acme/import", data={"csrf": csrf}, files={"file": ("k.pem", pem)}
    )
    assert r.status_code == 403
    assert ring_states(ready_service, acme) == before
