"""Key actions (rotate, revoke one, rotate-and-revoke, revoke all, import) and a key's page."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography import x509
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.errors import InvalidInputError, KeyturnError
from keyturn.keys.jwk import public_key_from_jwk, thumbprint
from keyturn.ring.model import KeyRecord, KeyState
from keyturn.ring.records import AuditRecord, Tenant
from keyturn.server.admin import reads
from keyturn.server.admin.context import AdminContext, Me
from keyturn.server.admin.display import when
from keyturn.server.admin.forms import reason
from keyturn.server.admin.session import Refused, check_csrf, read_upload
from keyturn.server.auth import Right
from keyturn.server.problems import status_for
from keyturn.service import Outcome

KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
KEY_AUDIT_ROWS = 50
IMPORT_FORMATS = ("pem", "pkcs12", "jwk")


def outcome_message(action: str, outcome: Outcome) -> str:
    """What an action did, in one sentence naming the keys."""
    events = outcome.change.events
    # revoke-all records one key.revoked per key, then key.replaced_all: name the whole act.
    events = [e for e in events if e.event == "key.replaced_all"] or events
    for ev in events:
        if ev.event == "key.rotated":
            return (
                f"Rotated: {ev.kid} signs now; {ev.details.get('previous')} stays published "
                f"until {when(ev.details.get('retire_after'))} UTC; new next key "
                f"{ev.details.get('next')}."
            )
        if ev.event == "key.replaced_all":
            revoked = [e.kid for e in outcome.change.events if e.event == "key.revoked"]
            return (
                f"Revoked all {len(revoked)} published keys; {ev.kid} signs now; new next key "
                f"{ev.details.get('next')}."
            )
        if ev.event == "key.revoked":
            if "promoted" in ev.details:
                return (
                    f"Revoked {ev.kid}: unpublished and announced at once; "
                    f"{ev.details.get('promoted')} signs now; new next key "
                    f"{ev.details.get('next')}."
                )
            extra = f" New next key {ev.details['next']}." if "next" in ev.details else ""
            return (
                f"Revoked {ev.kid} (was {ev.details.get('was')}): unpublished and announced "
                f"at once.{extra}"
            )
        if ev.event == "key.imported":
            return f"Imported {ev.kid} as {ev.details.get('as')}."
    return f"{action}: done."


@dataclass(frozen=True)
class Cert:
    subject: str
    issuer: str
    not_after: str


@dataclass(frozen=True)
class KeyView:
    tenant: Tenant
    key: KeyRecord
    thumbprint: str
    thumbprint_ok: bool
    x5c: list[Cert]
    x5t: str | None
    x5t_ok: bool | None
    audit: list[AuditRecord]
    now: float


def _certs(jwk: dict[str, Any]) -> tuple[list[Cert], bool | None]:
    chain = jwk.get("x5c") or []
    out: list[Cert] = []
    first: bytes | None = None
    for i, b64 in enumerate(chain):
        der = base64.b64decode(b64)
        if i == 0:
            first = der
        cert = x509.load_der_x509_certificate(der)
        out.append(
            Cert(
                cert.subject.rfc4514_string(),
                cert.issuer.rfc4514_string(),
                when(cert.not_valid_after_utc.timestamp()) + " UTC",
            )
        )
    x5t = jwk.get("x5t#S256")
    if x5t is None or first is None:
        return out, None
    digest = base64.urlsafe_b64encode(hashlib.sha256(first).digest()).rstrip(b"=").decode()
    return out, digest == x5t


class KeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        act = self._action
        return [
            Route("/t/{tenant}/rotate", act("Rotate", self.do_rotate), methods=["POST"]),
            Route(
                "/t/{tenant}/rotate-and-revoke",
                act("Rotate and revoke", self.do_rotate_and_revoke),
                methods=["POST"],
            ),
            Route(
                "/t/{tenant}/revoke-all", act("Revoke all", self.do_revoke_all), methods=["POST"]
            ),
            Route("/t/{tenant}/import", self.import_key, methods=["POST"]),
            Route("/t/{tenant}/keys/{kid}", self.show, methods=["GET"]),
            Route("/t/{tenant}/keys/{kid}/jwk", self.jwk, methods=["GET"]),
            Route("/t/{tenant}/keys/{kid}/revoke", act("Revoke", self.do_revoke), methods=["POST"]),
        ]

    # --- actions ------------------------------------------------------------------------
    def _action(
        self, name: str, do: Callable[[Me, str, dict[str, str], Request], Outcome]
    ) -> Callable[[Request], Awaitable[Response]]:
        ctx = self.ctx

        async def endpoint(request: Request) -> Response:
            me = await ctx.me(request)
            tenant = request.path_params["tenant"]
            form = await ctx.form(request, me)
            ctx.require(me.viewer, Right.MANAGE, tenant)
            return await self._done(
                request, me, name, tenant, lambda: do(me, tenant, form, request)
            )

        return endpoint

    async def _done(
        self, request: Request, me: Me, name: str, tenant: str, fn: Callable[[], Outcome]
    ) -> Response:
        """Run the action; redirect to the tenant page with its result or refusal."""
        ctx = self.ctx
        try:
            outcome = await ctx.run(fn)
            data: dict[str, Any] = {
                "ok": True,
                "msg": outcome_message(name, outcome),
                "w": outcome.warnings,
            }
        except KeyturnError as exc:
            if status_for(exc) >= 500:
                raise
            data = {"ok": False, "msg": f"{name} refused: {exc.detail}", "w": []}
        return ctx.flash_redirect(request, me, tenant, f"{ctx.base(request)}/t/{tenant}", data)

    def do_rotate(self, me: Me, tenant: str, form: dict[str, str], _r: Request) -> Outcome:
        # if_current: the page's current key; a resubmitted or stale form gets a 409, not a
        # second rotation.
        return self.ctx.service.rotate(
            tenant,
            actor=me.viewer.principal.actor,
            reason=reason(form, required=False),
            if_current=form.get("current") or None,
        )

    def do_rotate_and_revoke(
        self, me: Me, tenant: str, form: dict[str, str], _r: Request
    ) -> Outcome:
        if form.get("confirm") != "yes":
            raise InvalidInputError("tick the confirmation box to revoke the current key")
        kid = form.get("current", "")
        _, ring = self.ctx.service.ring(tenant)
        cur = ring.current
        if cur is None or cur.kid != kid:
            raise InvalidInputError(
                f"not revoked: the current key is now {cur.kid if cur else 'none'}, not {kid} "
                "(the page was out of date); check the ring and try again"
            )
        # Revoke the very key the operator saw as current (reason checked by the service).
        return self.ctx.service.revoke(
            tenant, kid, reason=form.get("reason", ""), actor=me.viewer.principal.actor
        )

    def do_revoke(self, me: Me, tenant: str, form: dict[str, str], request: Request) -> Outcome:
        kid = request.path_params["kid"]
        if not KID_RE.match(kid):
            raise InvalidInputError("no such key")
        if form.get("confirm") != "yes":
            raise InvalidInputError(f"tick the confirmation box to revoke {kid}")
        return self.ctx.service.revoke(
            tenant, kid, reason=form.get("reason", ""), actor=me.viewer.principal.actor
        )

    def do_revoke_all(self, me: Me, tenant: str, form: dict[str, str], _r: Request) -> Outcome:
        # Typed, not ticked: revoking every key (all live tokens die) needs the tenant's name.
        typed = form.get("confirm_name", "").strip()
        if typed != tenant:
            raise InvalidInputError(
                f"not revoked: type the tenant's name {tenant!r} to confirm revoking every key"
                + (f" (you typed {typed!r})" if typed else "")
            )
        return self.ctx.service.revoke_all(
            tenant, reason=form.get("reason", ""), actor=me.viewer.principal.actor
        )

    async def import_key(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        upload = await read_upload(request, "file")
        check_csrf(ctx.signer, me.session, upload.fields)
        ctx.require(me.viewer, Right.MANAGE, tenant)
        form = upload.fields
        as_state = form.get("as", "next")
        fmt = form.get("format", "") or None

        def do() -> Outcome:
            if not upload.data:
                raise InvalidInputError("choose a key file to import")
            if as_state not in ("next", "current", "previous"):
                raise InvalidInputError(f"import as next, current or previous, not {as_state!r}")
            if fmt is not None and fmt not in IMPORT_FORMATS:
                raise InvalidInputError(f"unknown format {fmt!r}")
            password = form.get("password", "")
            return ctx.service.import_key(
                tenant,
                upload.data,
                actor=me.viewer.principal.actor,
                fmt=fmt,  # type: ignore[arg-type]  # checked above
                password=password.encode() if password else None,
                as_state=KeyState(as_state),
                # Importing as next over an existing next key destroys that key's private half:
                # only when the operator ticked the box saying so (the CLI's --replace-next).
                replace_next=form.get("replace_next") == "yes",
            )

        return await self._done(request, me, "Import", tenant, do)

    # --- a key's page -------------------------------------------------------------------
    def _key(self, request: Request, me: Me) -> tuple[str, str]:
        tenant, kid = request.path_params["tenant"], request.path_params["kid"]
        self.ctx.require(me.viewer, Right.READ, tenant)
        if not KID_RE.match(kid):
            raise Refused(404, "Not found", "No such key.")
        return tenant, kid

    def _view(self, tenant: str, kid: str) -> KeyView:
        svc = self.ctx.service
        t = svc.tenant(tenant)
        k = svc.find_key(tenant, kid)
        tp = thumbprint(public_key_from_jwk(k.public_jwk))
        certs, x5t_ok = _certs(k.public_jwk)
        return KeyView(
            tenant=t,
            key=k,
            thumbprint=tp,
            thumbprint_ok=tp == k.kid,
            x5c=certs,
            x5t=k.public_jwk.get("x5t#S256"),
            x5t_ok=x5t_ok,
            audit=reads.key_audit(svc, tenant, kid, limit=KEY_AUDIT_ROWS),
            now=svc.clock.now(),
        )

    async def show(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant, kid = self._key(request, me)
        view = await ctx.run(self._view, tenant, kid)
        return ctx.render(
            request,
            "key.html",
            {
                "k": view.key,
                "t": view.tenant,
                "view": view,
                "jwk_text": orjson.dumps(view.key.public_jwk, option=orjson.OPT_INDENT_2).decode(),
                "can_manage": me.viewer.can(Right.MANAGE, tenant),
            },
            viewer=me.viewer,
        )

    async def jwk(self, request: Request) -> Response:
        """The public JWK as a file (never a private member: ``public_jwk`` has none)."""
        ctx = self.ctx
        me = await ctx.me(request)
        tenant, kid = self._key(request, me)
        key = await ctx.run(ctx.service.find_key, tenant, kid)
        return Response(
            orjson.dumps(key.public_jwk, option=orjson.OPT_INDENT_2),
            media_type="application/jwk+json",
            headers={"content-disposition": f'attachment; filename="{tenant}-{kid}.jwk.json"'},
        )
