"""The operators' admin pages under ``/admin``: server-rendered HTML over the management roles.

Security choices, in one place:

- Sign-in is a POST form carrying the API key (never a URL, which proxies and histories log).
  The key is checked by :meth:`ApiKeyStore.authenticate` (constant-time, one message for every
  failure), then forgotten: the session cookie holds ``key id + expiry + nonce``, HMAC-signed
  with a key drawn at process start, never the API key. Every request re-reads the API key row,
  so a revoked key loses its session at once and a changed role or tenant applies at once.
- Cookies are HttpOnly, ``SameSite=Strict``, ``Path=/admin``, Secure on https, one hour.
- State-changing forms carry a per-session CSRF token (an HMAC of the session), the sign-in
  form a token bound to a pre-login cookie (no login CSRF); a browser's ``Sec-Fetch-Site`` of
  another site is refused outright.
- Every value is HTML-escaped by construction (:class:`Safe` and :func:`fmt`); no script at
  all, CSS from a static file, and a strict CSP plus framing, referrer and cache headers on
  every response of the sub-application.
- Actions redirect after POST (a reload cannot repeat them) and name the key they act on:
  a stale page cannot rotate twice or revoke a key it did not show as current.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from keyturn.errors import InvalidInputError, KeyturnError
from keyturn.ring.model import TENANT_NAME_RE, KeyRecord, KeyState
from keyturn.ring.policy import fmt_duration
from keyturn.ring.timeline import Step, plan
from keyturn.server.auth import Principal, Right
from keyturn.server.problems import status_for
from keyturn.server.public import ASGIApp, Message, Receive, Scope, Send
from keyturn.service import KeyService, Outcome
from keyturn.store.apikeys import ApiKey, ApiKeyNotFoundError, ApiKeyStore
from keyturn.store.sql import AuditRecord, Tenant

SESSION_COOKIE = "kt_admin"
LOGIN_COOKIE = "kt_admin_login"
FLASH_COOKIE = "kt_admin_flash"
SESSION_TTL = 3600  # seconds; fixed, not sliding: a stolen cookie dies within the hour
LOGIN_TTL = 900  # the sign-in form's anti-CSRF cookie
FLASH_TTL = 60  # the result of an action, shown once after the redirect
PLAN_HORIZON = 30 * 86400
PLAN_ROWS = 40
AUDIT_ROWS = 25
OLD_KEY_ROWS = 20  # retired and revoked keys shown (newest first)
TENANTS_PER_PAGE = 100
MAX_FORM_FIELDS = 16
STATIC_DIR = Path(__file__).parent / "static"
CSS_PATH = "/static/admin.css"

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]
_REPLACED = frozenset(name for name, _ in SECURITY_HEADERS)

T = TypeVar("T")


class SecurityHeaders:
    """ASGI middleware: the admin security headers on every response, whatever produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED
                ]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_secured)


# --- escaping by construction -------------------------------------------------------------
class Safe(str):
    """HTML that is already escaped (or is trusted markup written in this module)."""

    __slots__ = ()


def e(value: object) -> Safe:
    """Escape ``value`` for HTML text and quoted attributes, unless it is already :class:`Safe`."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape(str(value), quote=True))


def fmt(template: str, *args: object, **kwargs: object) -> Safe:
    """``template.format`` with every argument escaped: the only way values enter a page."""
    return Safe(template.format(*(e(a) for a in args), **{k: e(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Safe], sep: str = "") -> Safe:
    return Safe(sep.join(parts))


# --- formatting -------------------------------------------------------------------------
def human(seconds: float) -> str:
    """A duration for people, at most two units: '29d 23h', '5m 12s', '45s'."""
    if not math.isfinite(seconds):
        return "-"
    s = round(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def when(t: float | None, *, seconds: bool = False) -> str:
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.gmtime(t))


def relative(t: float, now: float) -> str:
    d = t - now
    if abs(d) < 1:
        return "now"
    return f"in {human(d)}" if d > 0 else f"{human(d)} ago"


def short_kid(kid: str) -> Safe:
    if kid.startswith("(new key"):
        return fmt('<span class="planned">{}</span>', kid.strip("()"))
    text = kid if len(kid) <= 12 else kid[:10] + "…"
    return fmt('<code class="kid" title="{}">{}</code>', kid, text)


def stamp(t: float | None, now: float) -> Safe:
    if t is None:
        return Safe('<span class="muted">-</span>')
    return fmt('<span title="{} UTC">{}</span>', relative(t, now), when(t))


# --- signed cookies -----------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """What the session cookie proves: an API key id and when the session ends."""

    key_id: str
    expires: int
    nonce: str


class Signer:
    """HMAC-SHA256 over cookie payloads and form tokens with one per-process key.

    The key is random per process (``secrets.token_bytes``): a restart ends every session, and
    with several workers or replicas a session is valid only on the process that issued it.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        if len(self._key) < 32:
            raise ValueError("the session key must be at least 32 bytes")

    def mac(self, purpose: str, payload: str) -> str:
        msg = purpose.encode() + b"\x00" + payload.encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def check(self, purpose: str, payload: str, mac: str) -> bool:
        return hmac.compare_digest(
            self.mac(purpose, payload).encode(), mac.encode("utf-8", "replace")
        )

    # sessions
    def issue(self, key_id: str, now: float) -> tuple[str, Session]:
        sess = Session(key_id, int(now) + SESSION_TTL, secrets.token_hex(16))
        payload = f"v1.{sess.key_id}.{sess.expires}.{sess.nonce}"
        return f"{payload}.{self.mac('session', payload)}", sess

    def open(self, value: str, now: float) -> Session | None:
        if len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != "v1":
            return None
        payload = ".".join(parts[:4])
        if not self.check("session", payload, parts[4]):
            return None
        try:
            expires = int(parts[2])
        except ValueError:
            return None
        if expires <= now:
            return None
        return Session(parts[1], expires, parts[3])

    def csrf(self, sess: Session) -> str:
        return self.mac("csrf", sess.nonce)

    # the sign-in form
    def login_token(self, nonce: str) -> str:
        return self.mac("login", nonce)

    # one-shot results of an action, bound to the session and the tenant
    def flash(self, sess: Session, tenant: str, data: dict[str, Any], now: float) -> str:
        body = _b64(orjson.dumps({**data, "t": tenant, "exp": int(now) + FLASH_TTL}))
        return f"{body}.{self.mac('flash', sess.nonce + '.' + body)}"

    def open_flash(
        self, sess: Session, tenant: str, value: str, now: float
    ) -> dict[str, Any] | None:
        body, _, mac = value.partition(".")
        if not mac or not self.check("flash", sess.nonce + "." + body, mac):
            return None
        try:
            data = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("t") != tenant or data.get("exp", 0) <= now:
            return None
        return data


# --- page data --------------------------------------------------------------------------
@dataclass(frozen=True)
class Viewer:
    """The signed-in operator as the pages show them."""

    key: ApiKey
    csrf: str
    expires: float

    @property
    def principal(self) -> Principal:
        return Principal(self.key)

    def can(self, right: Right, tenant: str) -> bool:
        return self.principal.can(right, tenant)


@dataclass(frozen=True)
class TenantRow:
    tenant: Tenant
    rotation_at: float | None  # when the scheduler rotates (activation of current + R)


@dataclass(frozen=True)
class TenantView:
    """Everything the tenant page shows: public key data, the plan and the audit trail."""

    tenant: Tenant
    keys: Sequence[KeyRecord]
    steps: Sequence[Step]
    audit: Sequence[AuditRecord]
    now: float


@dataclass
class Flash:
    ok: bool
    message: str
    warnings: list[str] = field(default_factory=list)


# --- rendering --------------------------------------------------------------------------
def page(
    title: str,
    body: Safe,
    *,
    base: str = "/admin",
    viewer: Viewer | None = None,
    css_href: str | None = None,
) -> str:
    """A whole HTML document: header with the operator and sign-out, then ``body``."""
    who = Safe("")
    if viewer is not None:
        scope = viewer.key.tenant or "all tenants"
        who = fmt(
            '<div class="who"><span class="role role-{role}">{role}</span>'
            '<span class="scope">{scope}</span>'
            '<span class="muted" title="API key id">key {kid}</span>'
            '<span class="muted">session ends {ends} UTC</span>'
            '<form method="post" action="{base}/logout" class="inline">'
            '<input type="hidden" name="csrf" value="{csrf}">'
            '<button type="submit" class="link">Sign out</button></form></div>',
            role=viewer.key.role.value,
            scope=scope,
            kid=viewer.key.key_id,
            ends=time.strftime("%H:%M", time.gmtime(viewer.expires)),
            base=base,
            csrf=viewer.csrf,
        )
    return fmt(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · keyturn admin</title>"
        '<link rel="stylesheet" href="{css}"></head>\n<body>'
        '<header class="top"><a class="brand" href="{base}/">keyturn <span>admin</span></a>'
        "{who}</header>\n<main>{body}</main></body></html>\n",
        title=title,
        css=css_href or base + CSS_PATH,
        base=base,
        who=who,
        body=body,
    )


def render_login(*, base: str, login_token: str, error: str | None = None) -> str:
    alert = fmt('<p class="alert error" role="alert">{}</p>', error) if error else Safe("")
    body = fmt(
        '<section class="card login"><h1>Sign in</h1>{alert}'
        '<form method="post" action="{base}/login" autocomplete="off">'
        '<input type="hidden" name="login_token" value="{token}">'
        '<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" required maxlength="200" '
        'autocomplete="off" autocapitalize="off" spellcheck="false" placeholder="kt_…" autofocus>'
        '<button type="submit" class="primary">Sign in</button></form>'
        '<p class="hint">Use a key from <code>keyturn apikey create</code>. The key is checked '
        "once and never stored in the browser; the session lasts one hour and ends at once if "
        "the key is revoked.</p></section>",
        alert=alert,
        base=base,
        token=login_token,
    )
    return page("Sign in", body, base=base)


def render_message(title: str, message: str, *, base: str, viewer: Viewer | None) -> str:
    body = fmt(
        '<section class="card"><h1>{}</h1><p>{}</p><p><a href="{}/">Back to tenants</a></p>'
        "</section>",
        title,
        message,
        base,
    )
    return page(title, body, base=base, viewer=viewer)


def _policy_cells(t: Tenant) -> Safe:
    p = t.policy
    return fmt(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        fmt_duration(p.token_ttl),
        fmt_duration(p.jwks_max_age),
        fmt_duration(p.clock_skew),
        fmt_duration(p.rotation_period),
    )


def render_tenants(
    rows: Sequence[TenantRow],
    *,
    viewer: Viewer,
    now: float,
    base: str = "/admin",
    page_no: int = 1,
    pages: int = 1,
    total: int = 0,
) -> str:
    if not viewer.can(Right.READ, viewer.key.tenant or "") and not viewer.principal.is_admin:
        body = fmt(
            '<section class="card"><h1>Tenants</h1><p>A <strong>{role}</strong> key may sign '
            "and verify tokens for <strong>{tenant}</strong>, but not read its key ring. Sign "
            "in with a viewer or manager key to see it.</p></section>",
            role=viewer.key.role.value,
            tenant=viewer.key.tenant or "",
        )
        return page("Tenants", body, base=base, viewer=viewer)
    trs: list[Safe] = []
    for row in rows:
        t = row.tenant
        if row.rotation_at is None:
            due = Safe('<span class="muted">no current key</span>')
        elif row.rotation_at <= now:
            due = Safe('<span class="badge warn">due now</span>')
        else:
            due = fmt(
                '<span title="{} UTC">{}</span>',
                when(row.rotation_at),
                human(row.rotation_at - now),
            )
        forced = (
            Safe(' <span class="badge warn" title="policy forced past a safety rule">forced</span>')
            if t.policy_forced
            else Safe("")
        )
        trs.append(
            fmt(
                '<tr><td><a href="{base}/t/{name}">{name}</a>{forced}</td>'
                '<td class="mono wrap">{issuer}</td><td>{alg}</td>{policy}<td>{due}</td></tr>',
                base=base,
                name=t.name,
                forced=forced,
                issuer=t.issuer,
                alg=t.policy.alg.value,
                policy=_policy_cells(t),
                due=due,
            )
        )
    pager = Safe("")
    if pages > 1:
        links: list[Safe] = []
        if page_no > 1:
            links.append(fmt('<a href="{}/?page={}">&larr; Previous</a>', base, page_no - 1))
        links.append(fmt("<span>Page {} of {} ({} tenants)</span>", page_no, pages, total))
        if page_no < pages:
            links.append(fmt('<a href="{}/?page={}">Next &rarr;</a>', base, page_no + 1))
        pager = fmt('<nav class="pager">{}</nav>', join(links))
    table = (
        fmt(
            '<table class="grid"><thead><tr><th>Tenant</th><th>Issuer</th><th>Alg</th>'
            '<th title="longest token lifetime">T</th><th title="JWKS max-age">C</th>'
            '<th title="clock skew">S</th><th title="rotation period">R</th>'
            "<th>Next rotation in</th></tr></thead><tbody>{}</tbody></table>",
            join(trs),
        )
        if trs
        else Safe('<p class="muted">No tenants.</p>')
    )
    body = fmt(
        '<div class="title"><h1>Tenants</h1><span class="muted">{} UTC</span></div>'
        '<section class="card flush">{}</section>{}',
        when(now),
        table,
        pager,
    )
    return page("Tenants", body, base=base, viewer=viewer)


_STATE_ORDER = {
    KeyState.NEXT: 0,
    KeyState.CURRENT: 1,
    KeyState.PREVIOUS: 2,
    KeyState.RETIRED: 3,
    KeyState.REVOKED: 3,
}


def _flash_html(flash: Flash | None) -> Safe:
    if flash is None:
        return Safe("")
    items = join(fmt("<li>{}</li>", w) for w in flash.warnings)
    warnings = fmt('<ul class="warnings">{}</ul>', items) if flash.warnings else Safe("")
    return fmt(
        '<div class="alert {cls}" role="status"><strong>{msg}</strong>{warnings}</div>',
        cls="ok" if flash.ok and not flash.warnings else ("warn" if flash.ok else "error"),
        msg=flash.message,
        warnings=warnings,
    )


def _left_jwks(k: KeyRecord, now: float) -> Safe:
    """When and how the key leaves (or left) the JWKS: retire after, retired or revoked."""
    if k.state == KeyState.REVOKED:
        out = fmt('<span class="muted">revoked</span> {}', stamp(k.revoked_at, now))
        if k.revocation_reason:
            out = fmt('{}<div class="reason">{}</div>', out, k.revocation_reason)
        return out
    if k.state == KeyState.RETIRED:
        return fmt('<span class="muted">retired</span> {}', stamp(k.retired_at, now))
    if k.state == KeyState.PREVIOUS:
        return fmt('<span class="muted">after</span> {}', stamp(k.retire_after, now))
    return Safe('<span class="muted">-</span>')


def _ring_table(keys: Sequence[KeyRecord], now: float) -> Safe:
    live = sorted((k for k in keys if k.published), key=lambda k: _STATE_ORDER[k.state])
    old = sorted((k for k in keys if not k.published), key=lambda k: -k.created_at)
    rows: list[Safe] = []
    for k in [*live, *old[:OLD_KEY_ROWS]]:
        # A revoked signing key stopped signing when it was revoked.
        stopped = k.deactivated_at or (k.revoked_at if k.activated_at is not None else None)
        origin = (
            fmt(' <span class="chip origin" title="origin">{}</span>', k.origin)
            if k.origin != "generated"
            else Safe("")
        )
        rows.append(
            fmt(
                '<tr class="state-{state}"><td><span class="badge st-{state}">{state}</span>'
                '{origin}</td><td><code class="kid full">{kid}</code></td><td>{alg}</td>'
                "<td>{created}</td><td>{activated}</td><td>{stopped}</td><td>{left}</td></tr>",
                state=k.state.value,
                origin=origin,
                kid=k.kid,
                alg=k.alg.value,
                created=stamp(k.created_at, now),
                activated=stamp(k.activated_at, now),
                stopped=stamp(stopped, now),
                left=_left_jwks(k, now),
            )
        )
    hidden = len(old) - OLD_KEY_ROWS
    more = (
        fmt('<p class="muted note">{} older retired or revoked keys not shown.</p>', hidden)
        if hidden > 0
        else Safe("")
    )
    return fmt(
        '<table class="grid ring"><thead><tr><th>State</th><th>Kid</th><th>Alg</th>'
        "<th>Created</th><th>Signing since</th><th>Stopped signing</th>"
        '<th title="previous keys stay published until retire-after">Leaves the JWKS</th>'
        "</tr></thead><tbody>{}</tbody></table>{}",
        join(rows),
        more,
    )


def _jwks_chips(jwks: Iterable[tuple[str, str]]) -> Safe:
    return join(
        (fmt('<span class="chip st-{}">{} {}</span>', st, st, short_kid(kid)) for kid, st in jwks),
        " ",
    )


def _plan_table(view: TenantView) -> Safe:
    published = sorted((k for k in view.keys if k.published), key=lambda k: _STATE_ORDER[k.state])
    cur = next((k for k in published if k.state == KeyState.CURRENT), None)
    rows = [
        fmt(
            '<tr class="now"><td>now</td><td>{}</td><td class="muted">-</td><td>{}</td>'
            "<td>{}</td></tr>",
            when(view.now),
            _jwks_chips((k.kid, k.state.value) for k in published),
            short_kid(cur.kid) if cur else "",
        )
    ]
    for s in view.steps[:PLAN_ROWS]:
        rows.append(
            fmt(
                "<tr><td>{rel}</td><td>{at}</td><td>{event} {kids}</td><td>{jwks}</td>"
                "<td>{signing}</td></tr>",
                rel=relative(s.at, view.now),
                at=when(s.at),
                event=s.event,
                kids=join((short_kid(k) for k in s.kids if k), " "),
                jwks=_jwks_chips(s.jwks),
                signing=short_kid(s.signing),
            )
        )
    hidden = len(view.steps) - PLAN_ROWS
    more = (
        fmt(
            '<p class="muted note">{} more steps within 30 days (<code>keyturn plan</code> lists them all).</p>',
            hidden,
        )
        if hidden > 0
        else Safe("")
    )
    empty = (
        Safe('<p class="muted note">No scheduled transition in the next 30 days.</p>')
        if not view.steps
        else Safe("")
    )
    return fmt(
        '<table class="grid plan"><thead><tr><th>When</th><th>At (UTC)</th><th>Event</th>'
        "<th>JWKS after</th><th>Signing</th></tr></thead><tbody>{}</tbody></table>{}{}",
        join(rows),
        empty,
        more,
    )


def _details(details: dict[str, Any]) -> str:
    parts = []
    for k, v in details.items():
        if k == "reason":
            continue  # shown in its own column
        if k.endswith(("_at", "_after")) and isinstance(v, int | float):
            text = when(v)
        else:
            text = v if isinstance(v, str) else orjson.dumps(v).decode()
        parts.append(f"{k}={text}")
    out = ", ".join(parts)
    return out if len(out) <= 160 else out[:159] + "…"


def _audit_table(records: Sequence[AuditRecord], now: float) -> Safe:
    if not records:
        return Safe('<p class="muted note">No audit records.</p>')
    rows = [
        fmt(
            "<tr><td>{at}</td><td>{event}</td><td>{kid}</td><td>{actor}</td>"
            '<td class="wrap">{reason}</td><td class="details wrap">{details}</td></tr>',
            at=fmt('<span title="{}">{}</span>', relative(r.at, now), when(r.at, seconds=True)),
            event=r.event,
            kid=short_kid(r.kid) if r.kid else "",
            actor=r.actor,
            reason=r.reason or "",
            details=_details(r.details),
        )
        for r in records
    ]
    return fmt(
        '<table class="grid audit"><thead><tr><th>At (UTC)</th><th>Event</th><th>Kid</th>'
        "<th>Actor</th><th>Reason</th><th>Details</th></tr></thead><tbody>{}</tbody></table>",
        join(rows),
    )


def _actions(view: TenantView, *, viewer: Viewer, base: str) -> Safe:
    cur = next((k for k in view.keys if k.state == KeyState.CURRENT), None)
    nxt = next((k for k in view.keys if k.state == KeyState.NEXT), None)
    if cur is None:
        return Safe("")
    name = view.tenant.name
    hint = Safe("")
    if nxt is not None:
        age = view.now - nxt.created_at
        need = view.tenant.policy.prepublication
        if age < need:
            hint = fmt(
                '<p class="hint warn">The next key has been published for {} only, less than '
                "C + S = {}: rotating now is an early rotation (it warns).</p>",
                human(age),
                fmt_duration(need),
            )
    return fmt(
        '<section class="actions">'
        '<form method="post" action="{base}/t/{name}/rotate" class="card action">'
        "<h3>Rotate now</h3>"
        "<p>Next becomes current, current becomes previous, a new next key is created.</p>{hint}"
        '<input type="hidden" name="csrf" value="{csrf}">'
        '<input type="hidden" name="current" value="{cur}">'
        '<label for="rotate-reason">Reason <span class="muted">(optional)</span></label>'
        '<input id="rotate-reason" name="reason" maxlength="500">'
        '<button type="submit" class="primary">Rotate</button></form>'
        '<form method="post" action="{base}/t/{name}/rotate-and-revoke" class="card action danger">'
        "<h3>Rotate and revoke</h3>"
        "<p>For a compromised current key: it is unpublished and announced as revoked at once, "
        "next signs. Tokens it signed are rejected from now on.</p>"
        '<input type="hidden" name="csrf" value="{csrf}">'
        '<input type="hidden" name="current" value="{cur}">'
        '<label for="rr-reason">Reason <span class="muted">(required, audited)</span></label>'
        '<input id="rr-reason" name="reason" required maxlength="500">'
        '<label class="check"><input type="checkbox" name="confirm" value="yes" required> '
        "Revoke <code>{short}</code> now</label>"
        '<button type="submit" class="danger">Rotate and revoke</button></form>'
        "</section>",
        base=base,
        name=name,
        hint=hint,
        csrf=viewer.csrf,
        cur=cur.kid,
        short=cur.kid[:10] + "…",
    )


def render_tenant(
    view: TenantView,
    *,
    viewer: Viewer,
    base: str = "/admin",
    flash: Flash | None = None,
    css_href: str | None = None,
) -> str:
    """The tenant page: policy, key ring, actions (managers), 30-day plan, recent audit."""
    t, p, now = view.tenant, view.tenant.policy, view.now
    cur = next((k for k in view.keys if k.state == KeyState.CURRENT), None)
    rotation = Safe('<span class="muted">-</span>')
    if cur is not None and cur.activated_at is not None:
        at = cur.activated_at + p.rotation_period
        rotation = (
            Safe('<span class="badge warn">due now</span>')
            if at <= now
            else fmt('{}<div class="muted small">{} UTC</div>', human(at - now), when(at))
        )
    forced = (
        Safe(
            '<span class="badge warn" title="the policy was forced past a safety rule">policy forced</span>'
        )
        if t.policy_forced
        else Safe("")
    )
    facts = fmt(
        '<dl class="facts">'
        '<div><dt>Issuer</dt><dd class="mono wrap">{issuer}</dd></div>'
        "<div><dt>Algorithm</dt><dd>{alg}</dd></div>"
        '<div><dt title="longest token lifetime">T token TTL</dt><dd>{t}</dd></div>'
        '<div><dt title="JWKS Cache-Control max-age">C JWKS max-age</dt><dd>{c}</dd></div>'
        '<div><dt title="clock skew allowance">S clock skew</dt><dd>{s}</dd></div>'
        '<div><dt title="rotation period">R rotation</dt><dd>{r}</dd></div>'
        '<div><dt title="C + S: a key is published this long before it signs">Pre-publication</dt><dd>{pre}</dd></div>'
        '<div><dt title="max(2T, T + C + S)">Retention</dt><dd>{ret}</dd></div>'
        "<div><dt>Next rotation in</dt><dd>{rotation}</dd></div>"
        "</dl>",
        issuer=t.issuer,
        alg=p.alg.value,
        t=fmt_duration(p.token_ttl),
        c=fmt_duration(p.jwks_max_age),
        s=fmt_duration(p.clock_skew),
        r=fmt_duration(p.rotation_period),
        pre=fmt_duration(p.prepublication),
        ret=fmt_duration(p.retention),
        rotation=rotation,
    )
    can_manage = viewer.can(Right.MANAGE, t.name)
    actions = (
        _actions(view, viewer=viewer, base=base)
        if can_manage
        else Safe('<p class="muted note">Read-only: this key may not rotate or revoke.</p>')
    )
    body = fmt(
        '<nav class="crumbs"><a href="{base}/">Tenants</a> / {name}</nav>'
        '<div class="title"><h1>{name}</h1>{forced}<span class="muted">{now} UTC</span></div>'
        "{flash}"
        '<section class="card">{facts}</section>'
        '<h2>Key ring</h2><section class="card flush">{ring}</section>'
        "{actions}"
        '<h2>Plan: the next 30 days <span class="muted">what the JWKS contains after each step</span></h2>'
        '<section class="card flush">{plan}</section>'
        '<h2>Recent audit records <span class="muted">newest first</span></h2>'
        '<section class="card flush">{audit}</section>',
        base=base,
        name=t.name,
        forced=forced,
        now=when(now),
        flash=_flash_html(flash),
        facts=facts,
        ring=_ring_table(view.keys, now),
        actions=actions,
        plan=_plan_table(view),
        audit=_audit_table(view.audit, now),
    )
    return page(t.name, body, base=base, viewer=viewer, css_href=css_href)


# --- the application --------------------------------------------------------------------
def _outcome_message(action: str, outcome: Outcome) -> str:
    for ev in outcome.change.events:
        if ev.event == "key.rotated":
            return (
                f"Rotated: {ev.kid} signs now; {ev.details.get('previous')} stays published "
                f"until {when(ev.details.get('retire_after'))} UTC; new next key "
                f"{ev.details.get('next')}."
            )
        if ev.event == "key.revoked":
            return (
                f"Revoked {ev.kid}: unpublished and announced at once; "
                f"{ev.details.get('promoted')} signs now; new next key {ev.details.get('next')}."
            )
    return f"{action}: done."


class _Refused(Exception):
    """A request the admin refuses with a page (status, title, message)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def build_admin(
    service: KeyService, api_keys: ApiKeyStore, *, session_key: bytes | None = None
) -> ASGIApp:
    """The admin sub-application; mount it at ``/admin`` of the FastAPI app.

    ``session_key``: the HMAC key of sessions (at least 32 bytes); by default random per
    process, so a restart signs everybody out.
    """
    svc = service
    signer = Signer(session_key)

    async def run(fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    def base_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") or "/admin"

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def set_cookie(
        request: Request,
        resp: Response,
        name: str,
        value: str,
        max_age: int,
        path: str | None = None,
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path or base_of(request),
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(request: Request, resp: Response, name: str, path: str | None = None) -> None:
        resp.delete_cookie(
            name,
            path=path or base_of(request),
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )

    def html_response(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status)

    def to_login(request: Request) -> Response:
        resp = RedirectResponse(base_of(request) + "/login", status_code=303)
        if SESSION_COOKIE in request.cookies:
            clear_cookie(request, resp, SESSION_COOKIE)
        return resp

    async def current(request: Request) -> tuple[Viewer, Session] | None:
        """The signed-in operator: a valid cookie *and* an API key that is still active."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        now = svc.clock.now()
        sess = signer.open(raw, now)
        if sess is None:
            return None
        try:
            key = await run(partial(api_keys.get, sess.key_id))
        except ApiKeyNotFoundError:
            return None
        if not key.active:
            return None
        return Viewer(key, signer.csrf(sess), sess.expires), sess

    async def read_form(request: Request) -> dict[str, str]:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused(403, "Refused", "Cross-site form submissions are refused.")
        ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise _Refused(415, "Unsupported form", "Send the form from the admin page.")
        try:
            pairs = parse_qsl(
                (await request.body()).decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except (UnicodeDecodeError, ValueError):
            raise _Refused(422, "Invalid form", "The form could not be read.") from None
        form: dict[str, str] = {}
        for k, v in pairs:
            form.setdefault(k, v)  # the first value wins; no field may be smuggled twice
        return form

    def check_csrf(sess: Session, form: dict[str, str]) -> None:
        token = form.get("csrf", "")
        if not hmac.compare_digest(signer.csrf(sess).encode(), token.encode("utf-8", "replace")):
            raise _Refused(
                403, "Form expired", "The form was not issued by this session; reload and retry."
            )

    # --- sign in / out ------------------------------------------------------------------
    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        nonce = secrets.token_hex(16)
        base = base_of(request)
        resp = html_response(
            render_login(base=base, login_token=signer.login_token(nonce), error=error), status
        )
        set_cookie(request, resp, LOGIN_COOKIE, nonce, LOGIN_TTL, path=base + "/login")
        return resp

    async def login_get(request: Request) -> Response:
        if await current(request) is not None:
            return RedirectResponse(base_of(request) + "/", status_code=303)
        return login_page(request)

    async def login_post(request: Request) -> Response:
        form = await read_form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not signer.check("login", nonce, form.get("login_token", "")):
            return login_page(request, "The sign-in form expired. Please try again.", 400)
        key = await run(partial(api_keys.authenticate, form.get("api_key", "").strip()))
        if key is None:
            # One message for malformed, unknown, wrong and revoked keys: no key id oracle.
            return login_page(request, "Invalid or revoked API key.", 401)
        value, _ = signer.issue(key.key_id, svc.clock.now())
        resp = RedirectResponse(base_of(request) + "/", status_code=303)
        set_cookie(request, resp, SESSION_COOKIE, value, SESSION_TTL)
        clear_cookie(request, resp, LOGIN_COOKIE, path=base_of(request) + "/login")
        return resp

    async def logout(request: Request) -> Response:
        me = await current(request)
        if me is not None:
            check_csrf(me[1], await read_form(request))
        return to_login(request)

    # --- pages --------------------------------------------------------------------------
    async def tenants_page(request: Request) -> Response:
        me = await current(request)
        if me is None:
            return to_login(request)
        viewer = me[0]
        try:
            page_no = max(1, min(int(request.query_params.get("page", "1")), 10**6))
        except ValueError:
            page_no = 1

        def load() -> tuple[list[TenantRow], int, float]:
            p = viewer.principal
            if p.is_admin:
                tenants = svc.tenants()
            elif viewer.key.tenant is not None and p.can(Right.READ, viewer.key.tenant):
                tenants = [svc.tenant(viewer.key.tenant)]
            else:
                tenants = []
            chunk = tenants[(page_no - 1) * TENANTS_PER_PAGE : page_no * TENANTS_PER_PAGE]
            with svc.store.read() as tx:
                published = tx.published_keys([t.id for t in chunk]) if chunk else {}
            rows = []
            for t in chunk:
                cur = next(
                    (k for k in published.get(t.id, []) if k.state == KeyState.CURRENT), None
                )
                at = (
                    cur.activated_at + t.policy.rotation_period
                    if cur is not None and cur.activated_at is not None
                    else None
                )
                rows.append(TenantRow(t, at))
            return rows, len(tenants), svc.clock.now()

        rows, total, now = await run(load)
        pages = max(1, -(-total // TENANTS_PER_PAGE))
        return html_response(
            render_tenants(
                rows,
                viewer=viewer,
                now=now,
                base=base_of(request),
                page_no=page_no,
                pages=pages,
                total=total,
            )
        )

    def require(viewer: Viewer, right: Right, name: str) -> None:
        # Checked before the tenant is looked up: a scoped key learns nothing of other tenants.
        if not viewer.can(right, name):
            raise _Refused(403, "Not allowed", "This API key may not do that on this tenant.")
        if not TENANT_NAME_RE.match(name):
            raise _Refused(404, "Not found", "No such tenant.")

    async def tenant_page(request: Request) -> Response:
        me = await current(request)
        if me is None:
            return to_login(request)
        viewer, sess = me
        name = request.path_params["tenant"]
        require(viewer, Right.READ, name)

        def load() -> TenantView:
            tenant, ring = svc.ring(name)
            now = svc.clock.now()
            return TenantView(
                tenant=tenant,
                keys=ring.keys,
                steps=plan(ring, now, PLAN_HORIZON),
                audit=svc.store.audit_records(tenant=name, limit=AUDIT_ROWS),
                now=now,
            )

        view = await run(load)
        flash = None
        raw = request.cookies.get(FLASH_COOKIE)
        if raw:
            data = signer.open_flash(sess, name, raw, view.now)
            if data is not None:
                flash = Flash(
                    ok=bool(data.get("ok")),
                    message=str(data.get("msg", "")),
                    warnings=[str(w) for w in data.get("w", [])],
                )
        resp = html_response(render_tenant(view, viewer=viewer, base=base_of(request), flash=flash))
        if raw:
            clear_cookie(request, resp, FLASH_COOKIE)
        return resp

    def action(
        name: str, do: Callable[[Viewer, str, dict[str, str]], Outcome]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            me = await current(request)
            if me is None:
                return to_login(request)
            viewer, sess = me
            tenant = request.path_params["tenant"]
            form = await read_form(request)
            check_csrf(sess, form)
            require(viewer, Right.MANAGE, tenant)
            try:
                outcome = await run(partial(do, viewer, tenant, form))
                data: dict[str, Any] = {
                    "ok": True,
                    "msg": _outcome_message(name, outcome),
                    "w": outcome.warnings,
                }
            except KeyturnError as exc:
                if status_for(exc) >= 500:
                    raise
                data = {"ok": False, "msg": f"{name} refused: {exc.detail}", "w": []}
            resp = RedirectResponse(f"{base_of(request)}/t/{tenant}", status_code=303)
            set_cookie(
                request,
                resp,
                FLASH_COOKIE,
                signer.flash(sess, tenant, _trim(data), svc.clock.now()),
                FLASH_TTL,
            )
            return resp

        return endpoint

    def do_rotate(viewer: Viewer, tenant: str, form: dict[str, str]) -> Outcome:
        reason = form.get("reason", "").strip() or None
        if reason is not None and len(reason) > 500:
            raise InvalidInputError("reason longer than 500 characters")
        # if_current: the page's current key; a resubmitted or stale form gets a 409, not a
        # second rotation.
        return svc.rotate(
            tenant,
            actor=viewer.principal.actor,
            reason=reason,
            if_current=form.get("current") or None,
        )

    def do_rotate_and_revoke(viewer: Viewer, tenant: str, form: dict[str, str]) -> Outcome:
        if form.get("confirm") != "yes":
            raise InvalidInputError("tick the confirmation box to revoke the current key")
        kid = form.get("current", "")
        _, ring = svc.ring(tenant)
        cur = ring.current
        if cur is None or cur.kid != kid:
            raise InvalidInputError(
                f"not revoked: the current key is now {cur.kid if cur else 'none'}, not {kid} "
                "(the page was out of date); check the ring and try again"
            )
        # Revoke the very key the operator saw as current (reason checked by the service).
        return svc.revoke(tenant, kid, reason=form.get("reason", ""), actor=viewer.principal.actor)

    # --- errors -------------------------------------------------------------------------
    async def viewer_or_none(request: Request) -> Viewer | None:
        try:
            me = await current(request)
        except KeyturnError:
            return None
        return me[0] if me else None

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return html_response(
            render_message(
                exc.title, exc.message, base=base_of(request), viewer=await viewer_or_none(request)
            ),
            exc.status,
        )

    async def keyturn_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyturnError)
        status = status_for(exc)
        if status == 404:
            title, message = "Not found", "No such tenant."
        elif status >= 500:
            title, message = "Unavailable", "The key store is unavailable; try again shortly."
        else:
            title, message = "Refused", exc.detail
        return html_response(
            render_message(
                title, message, base=base_of(request), viewer=await viewer_or_none(request)
            ),
            status if status >= 400 else 500,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "Not found" if exc.status_code == 404 else "Refused"
        return html_response(
            render_message(title, str(exc.detail), base=base_of(request), viewer=None),
            exc.status_code,
        )

    routes = [
        Route("/", tenants_page, methods=["GET"]),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/t/{tenant}", tenant_page, methods=["GET"]),
        Route("/t/{tenant}/rotate", action("Rotate", do_rotate), methods=["POST"]),
        Route(
            "/t/{tenant}/rotate-and-revoke",
            action("Rotate and revoke", do_rotate_and_revoke),
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            _Refused: refused,
            KeyturnError: keyturn_error,
            HTTPException: http_error,
        },
    )
    return SecurityHeaders(app)


def _trim(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the flash cookie well under the 4 KB browsers allow."""
    msg = str(data.get("msg", ""))[:600]
    warnings = [str(w)[:600] for w in data.get("w", [])][:4]
    return {**data, "msg": msg, "w": warnings}


__all__ = [
    "SECURITY_HEADERS",
    "Flash",
    "SecurityHeaders",
    "Signer",
    "TenantView",
    "Viewer",
    "build_admin",
    "render_login",
    "render_tenant",
    "render_tenants",
]
