"""The admin console in a real browser (Chromium via Playwright) against `keyturn serve`.

Each step checks what the page shows and then what the public documents or the API say. One
browser and one server for the module; each test signs in on a fresh browser context and
works on a tenant of its own. Screenshots of the main pages go to a temporary folder, or to
``$KEYTURN_SCREENSHOTS`` (``scripts/screenshots`` writes docs/screenshots).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.ring.ring import Ring
from keyturn.server.admin.app import STATIC_DIR
from keyturn.server.admin.timeline import timeline_svg

from ..keys.test_importing import p12, self_signed
from .browser import FOCUSED_MATCHES_JS, UNLABELLED_JS, launch, screenshot_dir
from .live import LiveServer
from .test_admin_timeline import key

pytestmark = pytest.mark.slow

FAST = {"rotation_period": 3600, "token_ttl": 300, "jwks_max_age": 60, "clock_skew": 30}
WAIT_MS = 10_000  # the bound on every wait for a page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, headers=live.admin, timeout=30) as c:
        yield c


def make_tenant(api: httpx.Client, name: str, alg: str = "ES256") -> str:
    r = api.post("/api/v1/tenants", json={"name": name, "policy": {"alg": alg, **FAST}})
    assert r.status_code == 201, r.text
    return name


def jwks_kids(api: httpx.Client, tenant: str) -> list[str]:
    r = api.get(f"/t/{tenant}/.well-known/jwks.json")
    assert r.status_code == 200
    return [k["kid"] for k in r.json()["keys"]]


def key_states(api: httpx.Client, tenant: str) -> dict[str, str]:
    r = api.get(f"/api/v1/tenants/{tenant}/keys", params={"all": "true"})
    assert r.status_code == 200, r.text
    return {k["kid"]: k["state"] for k in r.json()}


class Console:
    """One signed-in browser context and the checks every page gets."""

    def __init__(self, page: Any, live: LiveServer, shots: Path) -> None:
        self.page = page
        self.live = live
        self.shots = shots
        page.set_default_timeout(WAIT_MS)

    def goto(self, path: str) -> Any:
        resp = self.page.goto(self.live.url + "/admin" + path)
        self.assert_labelled()
        return resp

    def assert_labelled(self) -> None:
        assert self.page.evaluate(UNLABELLED_JS) == [], "form controls without a label"

    def tab_to(self, selector: str, limit: int = 120) -> None:
        """Move the focus with the Tab key alone until it is on ``selector``."""
        for _ in range(limit):
            self.page.keyboard.press("Tab")
            if self.page.evaluate(FOCUSED_MATCHES_JS, selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    def flash(self) -> str:
        self.assert_labelled()  # every page an action lands on gets the label check too
        return str(self.page.locator("[role=status], [role=alert]").first.inner_text())

    def shot(self, name: str, full: bool = True, mask: list[Any] | None = None) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full, mask=mask or [])


@pytest.fixture
def console(browser: Any, live: LiveServer, shots: Path) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    c = Console(page, live, shots)
    # Keyboard only: the sign-in field has the focus; type the key and press Enter.
    c.goto("/login")
    assert page.evaluate(FOCUSED_MATCHES_JS, "#api_key")
    page.keyboard.type(live.token)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == live.url + "/admin/"
    try:
        yield c
    finally:
        context.close()


def test_sign_in_page_and_tenants(browser: Any, live: LiveServer, shots: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        c = Console(context.new_page(), live, shots)
        c.goto("/login")
        c.shot("login", full=False)
        c.page.fill("#api_key", "kt_0000000000000000_" + "A" * 43)
        c.page.click("button[type=submit]")
        assert "Invalid or revoked API key." in c.flash()
        c.page.fill("#api_key", live.token)
        c.page.click("button[type=submit]")
        c.page.wait_for_url(live.url + "/admin/")
        assert c.page.locator("a", has_text="default").count() >= 1
        assert c.page.locator("table.grid a[href$='/.well-known/jwks.json']").count() >= 1
        # The public links are the server's own documents.
        href = c.page.locator("a[href='/t/default/.well-known/jwks.json']").first
        assert href.count() == 1
    finally:
        context.close()


def test_rotate_then_revoke_a_previous_key(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-rotate")
    page = console.page
    console.goto(f"/t/{tenant}")
    before = key_states(api, tenant)
    old_current = next(k for k, s in before.items() if s == "current")
    # Keyboard only: Tab to the reason, type, Tab to the button, Enter.
    console.tab_to("#rotate-reason")
    page.keyboard.type("browser drill")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_MATCHES_JS, "form[action$='/rotate'] button")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert console.flash().startswith("Rotated:")
    assert "early rotation" in console.flash()  # the next key was brand new
    states = key_states(api, tenant)
    assert states[old_current] == "previous"
    assert old_current in jwks_kids(api, tenant)  # a previous key stays published
    assert page.locator("svg.timeline .bar").count() >= 4  # previous, current, next, new key 1
    console.shot("tenant-after-rotate")

    # Open the previous key from the ring and revoke it.
    page.click(f"table.ring a[href$='/keys/{old_current}']")
    page.wait_for_url(re.compile(f"/keys/{old_current}$"))
    assert page.locator("h1 .badge").inner_text() == "previous"
    assert old_current in page.locator("pre.jwk").inner_text()
    console.shot("key-page")
    # Keyboard only: reason, the confirmation box (Space), the button (Enter).
    console.tab_to("#rk-reason")
    page.keyboard.type("laptop stolen")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_MATCHES_JS, "#rk-confirm")
    page.keyboard.press("Space")
    assert page.is_checked("#rk-confirm")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert f"Revoked {old_current} (was previous)" in console.flash()
    assert old_current not in jwks_kids(api, tenant)
    feed = api.get(f"/t/{tenant}/revocations.json").json()
    assert old_current in str(feed)
    assert key_states(api, tenant)[old_current] == "revoked"
    assert page.locator("svg.timeline .bar .revoked").count() == 1
    audit = api.get("/api/v1/audit", params={"tenant": tenant, "event": "key.revoked"}).json()
    assert audit["items"][0]["actor"] == f"api:{console.live.token.split('_')[1]}"


def test_revoke_all_needs_the_typed_tenant_name(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-revoke-all")
    page = console.page
    before = set(jwks_kids(api, tenant))
    console.goto(f"/t/{tenant}")
    page.fill("#ra-reason", "key store leaked")
    page.fill("#ra-confirm", "br-revoke")  # a near miss
    with page.expect_navigation():
        page.click("form[action$='/revoke-all'] button")
    assert "type the tenant's name 'br-revoke-all'" in console.flash()
    assert set(jwks_kids(api, tenant)) == before
    # Keyboard only, the right name.
    console.tab_to("#ra-reason")
    page.keyboard.type("key store leaked")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_MATCHES_JS, "#ra-confirm")
    page.keyboard.type(tenant)
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert console.flash().startswith("Revoked all 2 published keys")
    after = set(jwks_kids(api, tenant))
    assert len(after) == 2 and not after & before
    states = key_states(api, tenant)
    assert all(states[k] == "revoked" for k in before)
    assert page.locator("svg.timeline .bar .revoked").count() == 2


def test_import_a_pkcs12_file(console: Console, api: httpx.Client, tmp_path: Path) -> None:
    tenant = make_tenant(api, "br-import")
    page = console.page
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "legacy.p12"
    path.write_bytes(p12(key, self_signed(key, "legacy signer"), password=b"s3cret"))
    console.goto(f"/t/{tenant}")
    page.set_input_files("#imp-file", str(path))
    page.fill("#imp-password", "wrong")
    page.select_option("#imp-as", "previous")
    with page.expect_navigation():
        page.click("form[action$='/import'] button")
    assert "Import refused" in console.flash()
    assert len(jwks_kids(api, tenant)) == 2
    page.set_input_files("#imp-file", str(path))
    page.fill("#imp-password", "s3cret")
    page.select_option("#imp-as", "previous")
    with page.expect_navigation():
        page.click("form[action$='/import'] button")
    msg = console.flash()
    assert msg.startswith("Imported ") and msg.endswith(" as previous.")
    kid = msg.split()[1]
    jwks = api.get(f"/t/{tenant}/.well-known/jwks.json").json()["keys"]
    imported = next(k for k in jwks if k["kid"] == kid)
    assert imported["x5c"] and imported["x5t#S256"]
    assert key_states(api, tenant)[kid] == "previous"
    page.click(f"table.ring a[href$='/keys/{kid}']")
    assert "CN=legacy signer" in page.locator("ol.chain").inner_text()
    assert "matches the first certificate" in page.content()
    assert "equals the kid" in page.content()
    with page.expect_download() as dl:
        page.click("a[download]")
    downloaded = Path(dl.value.path()).read_text()
    assert f'"kid": "{kid}"' in downloaded and '"d"' not in downloaded


def test_policy_refused_with_the_rule_then_saved(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-policy")
    page = console.page
    console.goto(f"/t/{tenant}")
    page.click("a[href$='/policy']")
    page.fill("#pol-rotation_period", "45s")  # shorter than C + S = 1m30s
    with page.expect_navigation():
        page.click("button[value=save]")
    alert = page.locator("[role=alert]").inner_text()
    assert "pre-publication: the rotation period R=45s is shorter than C+S=1m30s" in alert
    assert page.input_value("#pol-rotation_period") == "45s"  # the form keeps what was typed
    console.shot("policy-refused")
    assert api.get(f"/api/v1/tenants/{tenant}").json()["policy"]["rotation_period"] == 3600
    # Check and preview changes nothing; the preview shows the new plan.
    page.fill("#pol-rotation_period", "2h")
    with page.expect_navigation():
        page.click("button[value=check]")
    assert "Every timing rule holds." in page.locator("[role=status]").first.inner_text()
    assert page.locator("svg.timeline").count() == 1
    assert "in 2h" in page.locator(".cols section").nth(1).inner_text()
    assert api.get(f"/api/v1/tenants/{tenant}").json()["policy"]["rotation_period"] == 3600
    with page.expect_navigation():
        page.click("button[value=save]")
    assert "Policy of br-policy saved: rotation_period." in console.flash()
    assert api.get(f"/api/v1/tenants/{tenant}").json()["policy"]["rotation_period"] == 7200


def test_create_and_revoke_an_api_key(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-apikeys")
    page = console.page
    console.goto("/apikeys")
    page.select_option("#ak-role", "viewer")
    page.select_option("#ak-tenant", tenant)
    page.fill("#ak-description", "dashboard read-only")
    with page.expect_navigation():
        page.click("form[action$='/apikeys'] button.primary")
    token = page.input_value("#new-token")
    assert token.startswith("kt_")
    # The committed picture shows no token, not even a dead one.
    console.shot("apikey-created", mask=[page.locator("#new-token")])
    as_viewer = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/v1/tenants/{tenant}", headers=as_viewer).status_code == 200
    assert api.get("/api/v1/tenants/default", headers=as_viewer).status_code == 403
    key_id = token.split("_")[1]
    console.goto("/apikeys")
    assert page.locator("#new-token").count() == 0  # shown once
    row = page.locator(f"#apikey-{key_id}")
    assert "dashboard read-only" in row.inner_text()
    with page.expect_navigation():
        row.locator("button", has_text="Revoke").click()
    assert f"Revoked API key {key_id} (viewer)." in console.flash()
    assert api.get(f"/api/v1/tenants/{tenant}", headers=as_viewer).status_code == 401


def test_create_an_oauth_client_then_revoke_a_session(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-sessions")
    page = console.page
    console.goto(f"/t/{tenant}")
    with page.expect_navigation():
        page.click(f"a[href$='/t/{tenant}/clients']")
    console.assert_labelled()
    page.fill("#oc-scope", "read write")
    page.fill("#oc-description", "web app")
    with page.expect_navigation():
        page.click("form[action$='/clients'] button.primary")
    client_id = page.input_value("#new-client-id")
    secret = page.input_value("#new-secret")
    assert client_id.startswith("ktc_") and secret.startswith("kts_")
    console.shot("oauth-client-created", mask=[page.locator("#new-secret")])
    console.goto(f"/t/{tenant}/clients")
    assert page.locator("#new-secret").count() == 0  # shown once
    assert secret not in page.content()
    assert "web app" in page.locator(f"#client-{client_id}").inner_text()
    console.shot("oauth-clients")
    r = api.post(
        f"/api/v1/tenants/{tenant}/sessions", json={"client_id": client_id, "subject": "alice"}
    )
    assert r.status_code == 201, r.text
    sid = r.json()["session"]["session_id"]
    console.goto(f"/t/{tenant}/sessions?subject=alice")
    row = page.locator(f"#session-{sid}")
    assert "alice" in row.inner_text()
    with page.expect_navigation():
        row.locator("button", has_text="Revoke").click()
    assert f"Revoked session {sid} of alice." in console.flash()
    r = api.get(f"/api/v1/tenants/{tenant}/sessions/{sid}")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None


def test_audit_filters_and_pages(console: Console, api: httpx.Client) -> None:
    tenant = make_tenant(api, "br-audit")
    for i in range(52):
        r = api.post(f"/api/v1/tenants/{tenant}/keys/rotate", json={"reason": f"drill {i}"})
        assert r.status_code == 200, r.text
    page = console.page
    console.goto("/audit")
    page.select_option("#f-tenant", tenant)
    page.select_option("#f-event", "key.rotated")
    with page.expect_navigation():
        page.click("form.filters button")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 50
    assert "drill 51" in rows.first.inner_text()
    console.shot("audit", full=False)
    with page.expect_navigation():
        page.click("a[rel=next]")
    assert rows.count() == 2
    assert "drill 0" in rows.last.inner_text()
    assert page.locator("a[rel=next]").count() == 0
    with page.expect_navigation():
        page.click("text=Check the hash chains")
    assert "Audit chain intact" in page.locator("[role=status]").first.inner_text()
    # Full details, no cut-offs: the previous and next kids of a rotation are both there.
    details = page.locator("table.audit td.details").first.inner_text()
    assert "previous" in details and "next" in details and "…" not in details


def test_tenants_and_tenant_page_screenshots(console: Console, api: httpx.Client) -> None:
    """The pictures the README links: the tenants list and a tenant page with some history."""
    tenant = make_tenant(api, "payments")
    for reason in ("scheduled drill", "second drill"):
        assert api.post(f"/api/v1/tenants/{tenant}/keys/rotate", json={"reason": reason}).is_success
    states = key_states(api, tenant)
    prev = sorted(k for k, s in states.items() if s == "previous")[0]
    assert api.post(
        f"/api/v1/tenants/{tenant}/keys/{prev}/revoke", json={"reason": "found in a log file"}
    ).is_success
    console.goto("/")
    console.shot("tenants")
    console.goto(f"/t/{tenant}")
    assert console.page.locator("svg.timeline .revoked").count() == 1
    console.shot("tenant")
    console.page.locator("svg.timeline").screenshot(path=str(console.shots / "timeline.png"))


def test_timeline_of_a_season(browser: Any, shots: Path) -> None:
    """Five weeks of a weekly ring, drawn as the tenant page draws it (the README's picture).

    A live server's keys are all seconds old; this ring has a history: weekly rotations, the
    retention of each previous key, one previous key revoked, and the plan ahead.
    """
    day = 86400.0
    t0 = 1_793_491_200.0  # 2026-11-01 00:00 UTC
    policy = Policy(
        alg=Alg.ES256,
        rotation_period=7 * day,
        token_ttl=12 * 3600,
        jwks_max_age=3600,
        clock_skew=300,
    )  # retention max(2T, T+C+S) = 1d
    ring = Ring("payments", policy, [])
    ring.bootstrap(t0, key("k0-bootstrap-current"), key("k1-first-next"))
    for week in range(1, 5):
        at = t0 + week * 7 * day
        ring.rotate(at, key(f"k{week + 1}-week-{week}"))
        if week < 4:
            ring.retire_due(at + day)  # the scheduler retires the previous key on time
    now = t0 + 28.75 * day
    ring.revoke("k3-week-2", t0 + 28.5 * day, "found in a CI log", None)
    svg = timeline_svg(ring, now)
    css = (STATIC_DIR / "admin.css").read_text()
    context = browser.new_context(viewport={"width": 1100, "height": 600})
    try:
        page = context.new_page()
        page.set_content(
            f"<!doctype html><html><head><style>{css}</style></head><body><main>"
            f'<section class="card timeline-card">{svg}</section></main></body></html>'
        )
        picture = page.locator("svg.timeline")
        # In the window (the last 10 days, the next 10): k2 to k5 and the plan's next key.
        assert picture.locator(".bar").count() == 5
        assert picture.locator(".revoked").count() == 1
        assert picture.locator(".shade.retention").count() >= 3
        box = picture.bounding_box()
        assert box is not None and box["height"] > 150
        picture.screenshot(path=str(shots / "timeline-season.png"))
    finally:
        context.close()
