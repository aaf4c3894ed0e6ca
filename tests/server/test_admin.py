"""The admin pages in-process: sign-in, cookies, CSRF, roles and scoping, escaping, actions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from keyturn.clock import FakeClock
from keyturn.config import Settings
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyState, Policy
from keyturn.server.admin import SESSION_TTL
from keyturn.server.admin.templating import environment
from keyturn.server.app import KeyturnApp
from keyturn.service import KeyService
from keyturn.store.apikeys import ApiKeyStore

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
GENERIC_FAILURE = "Invalid or revoked API key."


def assert_secured(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"


def field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m is not None, f"no field {name}"
    return m.group(1)


def set_cookie(r: httpx.Response, name: str) -> str:
    for value in r.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no Set-Cookie for {name}: {r.headers.get_list('set-cookie')}")


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/admin/login")
    return await client.post(
        "/admin/login",
        data={"api_key": token, "login_token": field(form.text, "login_token")},
    )


async def signed_in(client: httpx.AsyncClient, token: str) -> None:
    r = await login(client, token)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/"


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


def current_kid(svc: KeyService, tenant: str = "default") -> str:
    _, ring = svc.ring(tenant)
    assert ring.current is not None
    return ring.current.kid


# --- sign-in, cookies, headers ---------------------------------------------------------------
async def test_signed_out_pages_redirect_and_login_form_is_post(client: httpx.AsyncClient) -> None:
    for path in ("/admin/", "/admin/t/default"):
        r = await client.get(path)
        assert r.status_code == 303
        assert r.headers["location"] == "/admin/login"
        assert_secured(r)
    r = await client.get("/admin/login")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert_secured(r)
    assert '<form method="post" action="/admin/login"' in r.text
    assert 'type="password"' in r.text
    assert "<script" not in r.text and "style=" not in r.text  # nothing the CSP would block
    cookie = set_cookie(r, "kt_admin_login").lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin/login" in cookie


async def test_login_sets_a_session_cookie_without_the_key(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await login(client, admin_token)
    assert r.status_code == 303
    assert_secured(r)
    cookie = set_cookie(r, "kt_admin")
    flags = [p.strip().lower() for p in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "secure" in flags  # the request was https
    assert "path=/admin" in flags
    assert f"max-age={SESSION_TTL}" in flags
    value = cookie.split(";")[0].split("=", 1)[1]
    key_id, secret = admin_token.split("_", 2)[1:]
    assert secret not in value and admin_token not in value
    assert key_id in value  # only the id (and an expiry, a nonce, a MAC)
    page = await client.get("/admin/")
    assert page.status_code == 200
    assert_secured(page)
    assert '<a href="/admin/t/default">default</a>' in page.text
    # Signed in: the login page sends you to the tenants.
    assert (await client.get("/admin/login")).status_code == 303


async def test_cookie_is_not_secure_over_plain_http(app: KeyturnApp, admin_token: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as c:
        r = await login(c, admin_token)
        assert r.status_code == 303
        flags = [p.strip().lower() for p in set_cookie(r, "kt_admin").split(";")]
        assert "secure" not in flags and "httponly" in flags
        assert (await c.get("/admin/")).status_code == 200


async def test_login_failures_are_generic(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, admin_token: str
) -> None:
    key_id = admin_token.split("_")[1]
    revoked = api_keys.create("admin", actor="test")[1]
    api_keys.revoke(revoked.split("_")[1], actor="test")
    attempts = {
        "wrong secret of a real key id": f"kt_{key_id}_{'A' * 43}",
        "unknown key id": f"kt_{'0' * 16}_{'A' * 43}",
        "malformed": "not-a-key",
        "empty": "",
        "revoked": revoked,
    }
    bodies = set()
    for why, token in attempts.items():
        r = await login(client, token)
        assert r.status_code == 401, why
        assert_secured(r)
        assert GENERIC_FAILURE in r.text, why
        assert "kt_admin=" not in r.headers.get("set-cookie", ""), why
        bodies.add(re.sub(r'name="login_token" value="[^"]*"', "", r.text))
    assert len(bodies) == 1  # byte-identical pages: nothing tells the cases apart


async def test_login_needs_the_form_token(client: httpx.AsyncClient, admin_token: str) -> None:
    # No pre-login cookie and token: a cross-site page cannot sign a victim in (login CSRF).
    r = await client.post("/admin/login", data={"api_key": admin_token, "login_token": "x"})
    assert r.status_code == 400
    assert "expired" in r.text
    assert "kt_admin=" not in r.headers.get("set-cookie", "")
    # The key in a URL is ignored: nothing signs in through GET.
    r = await client.get(f"/admin/login?api_key={admin_token}")
    assert "kt_admin=" not in r.headers.get("set-cookie", "")
    assert (await client.get("/admin/")).status_code == 303


async def test_logout_needs_csrf_and_clears_the_session(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/")
    r = await client.post("/admin/logout", data={"csrf": "forged"})
    assert r.status_code == 403
    assert (await client.get("/admin/")).status_code == 200
    r = await client.post("/admin/logout", data={"csrf": field(page.text, "csrf")})
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/login"
    cleared = set_cookie(r, "kt_admin").lower()
    assert 'kt_admin="";' in cleared or "max-age=0" in cleared
    assert (await client.get("/admin/")).status_code == 303


async def test_session_expiry_and_tampering(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    assert (await client.get("/admin/")).status_code == 200
    value = client.cookies["kt_admin"]
    parts = value.split(".")
    parts[2] = str(int(parts[2]) + 86400)  # a longer life, with the old MAC
    client.cookies.set("kt_admin", ".".join(parts), domain="keys.example.test", path="/admin")
    assert (await client.get("/admin/")).status_code == 303
    client.cookies.set("kt_admin", value, domain="keys.example.test", path="/admin")
    assert (await client.get("/admin/")).status_code == 200
    clock = ready_service.clock
    assert isinstance(clock, FakeClock)
    clock.advance(SESSION_TTL + 1)
    assert (await client.get("/admin/")).status_code == 303


async def test_revoked_api_key_loses_its_session_at_once(
    client: httpx.AsyncClient, api_keys: ApiKeyStore
) -> None:
    rec, token = api_keys.create("viewer", tenant="default", actor="test")
    await signed_in(client, token)
    assert (await client.get("/admin/t/default")).status_code == 200
    api_keys.revoke(rec.key_id, actor="test")
    r = await client.get("/admin/t/default")
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/login"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/admin/login", id="login"),
        pytest.param("/admin/static/admin.css", id="css"),
        pytest.param("/admin/nope", id="not-found"),
        pytest.param("/admin/static/missing.css", id="static-not-found"),
    ],
)
async def test_security_headers_on_every_admin_response(
    client: httpx.AsyncClient, path: str
) -> None:
    assert_secured(await client.get(path))


async def test_stylesheet_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/static/admin.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    assert "table.grid" in r.text


async def test_public_documents_do_not_get_admin_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert "content-security-policy" not in r.headers
    assert r.headers["cache-control"].startswith("public, max-age=")


# --- roles and tenant scoping ----------------------------------------------------------------
async def test_admin_sees_every_tenant_and_gets_404_for_unknown(
    client: httpx.AsyncClient, admin_token: str, acme: str
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/")
    assert '<a href="/admin/t/acme">acme</a>' in page.text
    assert '<a href="/admin/t/default">default</a>' in page.text
    r = await client.get("/admin/t/acme")
    assert r.status_code == 200
    assert 'action="/admin/t/acme/rotate"' in r.text
    assert (await client.get("/admin/t/missing")).status_code == 404
    assert (await client.get("/admin/t/Not_A_Name")).status_code == 404


async def test_viewer_is_read_only_and_scoped(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str, ready_service: KeyService
) -> None:
    _, token = api_keys.create("viewer", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/")
    assert '<a href="/admin/t/acme">acme</a>' in page.text
    assert "/admin/t/default" not in page.text
    r = await client.get("/admin/t/acme")
    assert r.status_code == 200
    assert "/rotate" not in r.text and "Read-only" in r.text
    csrf = field(r.text, "csrf")  # the sign-out form's token is the session's token
    before = current_kid(ready_service, acme)
    r = await client.post("/admin/t/acme/rotate", data={"csrf": csrf, "current": before})
    assert r.status_code == 403
    assert current_kid(ready_service, acme) == before
    # Other tenants, existing or not, are one and the same 403: nothing leaks.
    for other in ("default", "missing"):
        r = await client.get(f"/admin/t/{other}")
        assert r.status_code == 403
        assert_secured(r)


async def test_manager_manages_its_tenant_only(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str, ready_service: KeyService
) -> None:
    _, token = api_keys.create("manager", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/t/acme")
    assert 'action="/admin/t/acme/rotate"' in page.text
    assert 'action="/admin/t/acme/rotate-and-revoke"' in page.text
    csrf = field(page.text, "csrf")
    before = current_kid(ready_service)
    r = await client.post("/admin/t/default/rotate", data={"csrf": csrf, "current": before})
    assert r.status_code == 403
    assert current_kid(ready_service) == before
    assert (await client.get("/admin/t/default")).status_code == 403
    assert "/admin/t/default" not in (await client.get("/admin/")).text


async def test_signer_cannot_read_key_rings(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, acme: str
) -> None:
    # As in the API: a signer key signs and verifies, it has no read right on the ring.
    _, token = api_keys.create("signer", tenant=acme, actor="test")
    await signed_in(client, token)
    page = await client.get("/admin/")
    assert page.status_code == 200
    assert "not read its key ring" in page.text
    assert "/admin/t/" not in page.text
    assert (await client.get("/admin/t/acme")).status_code == 403
    assert (await client.get("/admin/t/default")).status_code == 403


# --- CSRF ------------------------------------------------------------------------------------
async def test_actions_refuse_missing_wrong_or_foreign_csrf(
    client: httpx.AsyncClient,
    other_client: httpx.AsyncClient,
    admin_token: str,
    ready_service: KeyService,
) -> None:
    await signed_in(client, admin_token)
    await signed_in(other_client, admin_token)
    foreign = field((await other_client.get("/admin/t/default")).text, "csrf")
    own = field((await client.get("/admin/t/default")).text, "csrf")
    assert own != foreign  # per session, not per key
    before = current_kid(ready_service)
    for data in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": foreign}):
        r = await client.post("/admin/t/default/rotate", data={**data, "current": before})
        assert r.status_code == 403, data
        assert_secured(r)
    r = await client.post(
        "/admin/t/default/rotate",
        data={"csrf": own, "current": before},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403
    r = await client.post(
        "/admin/t/default/rotate", json={"csrf": own, "current": before}
    )  # not a form
    assert r.status_code == 415
    assert current_kid(ready_service) == before


# --- actions ---------------------------------------------------------------------------------
async def test_rotate_through_the_form_changes_the_ring_and_warns(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/t/default")
    old = current_kid(ready_service)
    assert field(page.text, "current") == old
    assert "early rotation (it warns)" in page.text  # the next key is brand new
    form = {"csrf": field(page.text, "csrf"), "current": old, "reason": "drill"}
    r = await client.post("/admin/t/default/rotate", data=form)
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/t/default"
    flash = set_cookie(r, "kt_admin_flash").lower()
    assert "httponly" in flash and "samesite=strict" in flash
    _, ring = ready_service.ring("default")
    assert ring.current is not None and ring.current.kid != old
    assert ring.get(old).state == KeyState.PREVIOUS
    shown = await client.get("/admin/t/default")
    assert "Rotated:" in shown.text
    assert "early rotation: key" in shown.text  # the service's warning, shown to the operator
    assert "drill" in shown.text  # the audit trail
    # Shown once: the flash cookie is cleared.
    assert "Rotated:" not in (await client.get("/admin/t/default")).text
    # The same form again (a reload, a double click) does not rotate twice.
    r = await client.post("/admin/t/default/rotate", data=form)
    assert r.status_code == 303
    _, again = ready_service.ring("default")
    assert again.current is not None and again.current.kid == ring.current.kid
    assert "refused" in (await client.get("/admin/t/default")).text


async def test_rotate_and_revoke_needs_reason_and_confirmation(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    page = await client.get("/admin/t/default")
    old = current_kid(ready_service)
    base = {"csrf": field(page.text, "csrf"), "current": old}
    for data, expected in (
        ({**base, "reason": "leaked"}, "confirmation"),
        ({**base, "reason": "   ", "confirm": "yes"}, "reason is required"),
    ):
        r = await client.post("/admin/t/default/rotate-and-revoke", data=data)
        assert r.status_code == 303
        assert current_kid(ready_service) == old
        shown = await client.get("/admin/t/default")
        assert expected in shown.text
        assert 'class="alert error"' in shown.text
    r = await client.post(
        "/admin/t/default/rotate-and-revoke",
        data={**base, "reason": "key leaked in CI logs", "confirm": "yes"},
    )
    assert r.status_code == 303
    _, ring = ready_service.ring("default")
    assert ring.get(old).state == KeyState.REVOKED
    assert ring.get(old).revocation_reason == "key leaked in CI logs"
    shown = await client.get("/admin/t/default")
    assert f"Revoked {old}" in shown.text
    assert "are rejected from now on" in shown.text  # the service's warning
    assert "key leaked in CI logs" in shown.text
    # A stale form names the old key: it revokes nothing more.
    new = current_kid(ready_service)
    r = await client.post(
        "/admin/t/default/rotate-and-revoke",
        data={**base, "reason": "again", "confirm": "yes"},
    )
    assert current_kid(ready_service) == new
    assert "the page was out of date" in (await client.get("/admin/t/default")).text


async def test_tenant_page_shows_ring_plan_and_audit(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    await signed_in(client, admin_token)
    r = await client.get("/admin/t/default")
    _, ring = ready_service.ring("default")
    for k in ring.keys:
        assert k.kid in r.text
    plan_html = r.text.split("Plan: the next 30 days")[1].split("Recent audit records")[0]
    # Now, then the scheduled rotation at R = 30d: the new key appears as "new key 1".
    assert plan_html.count("<tr") == 3
    assert "<td>in 30d</td>" in plan_html and "rotate" in plan_html and "new key 1" in plan_html
    assert "tenant.created" in r.text and "key.created" in r.text
    for label in ("T token TTL", "C JWKS max-age", "S clock skew", "R rotation", "30d", "1h"):
        assert label in r.text
    assert "&quot;d&quot;" not in r.text and "sealed_private" not in r.text  # public data only


# --- escaping --------------------------------------------------------------------------------
async def test_every_value_is_escaped(
    client: httpx.AsyncClient, admin_token: str, ready_service: KeyService
) -> None:
    evil = "<script>alert(1)</script>"
    ready_service.create_tenant(
        "evil", issuer=f"https://x.example/{evil}", policy=Policy(), actor=f"test{evil}"
    )
    ready_service.rotate("evil", actor="test", reason=f"drill {evil}")
    await signed_in(client, admin_token)
    for path in ("/admin/", "/admin/t/evil"):
        r = await client.get(path)
        assert r.status_code == 200
        assert "<script" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_templates_escape_every_value_svg_included() -> None:
    # The string-building helpers (Safe, e, fmt) gave way to Jinja2 templates: the same rule,
    # now held by autoescape on every template, .svg too (Starlette's default would not).
    env = environment()
    assert env.from_string("<b>{{ v }}</b>").render(v='<i a="1">') == (
        "<b>&lt;i a=&#34;1&#34;&gt;</b>"
    )
    assert env.from_string("{{ v }}").render(v="'") == "&#39;"
    svg = env.get_template("timeline.svg")
    assert svg.environment.autoescape is True


async def test_sessions_are_valid_on_every_process_sharing_the_master_key(
    ready_service: KeyService, settings: Settings, admin_token: str
) -> None:
    """Two apps (as two workers or replicas would be) accept each other's sessions."""
    from keyturn.server.app import create_app

    one = create_app(settings, ready_service, watchers=[])
    two = create_app(settings, ready_service, watchers=[])
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=one), base_url=PUBLIC_URL) as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=two), base_url=PUBLIC_URL) as b,
    ):
        await signed_in(a, admin_token)
        for cookie in a.cookies.jar:
            b.cookies.set(cookie.name, cookie.value or "", domain=cookie.domain, path=cookie.path)
        r = await b.get("/admin/")
        assert r.status_code == 200, r.text
