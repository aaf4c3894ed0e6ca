"""The tenants list (and creating one), and a tenant's page: policy, ring, timeline, plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.errors import InvalidInputError, UnsafePolicyError
from keyturn.ring.model import KeyRecord, KeyState, Policy, check_tenant_name
from keyturn.ring.policy_contract import next_rotation_at, prepublication_margin
from keyturn.ring.records import AuditRecord, Tenant
from keyturn.ring.timeline import Step, plan
from keyturn.server.admin import reads
from keyturn.server.admin.context import AdminContext, Me
from keyturn.server.admin.forms import ALGS, DURATION_FIELDS, RSA_BITS, parse_policy, policy_values
from keyturn.server.admin.timeline import timeline_svg
from keyturn.server.auth import Right

PLAN_HORIZON = 30 * 86400
PLAN_ROWS = 12
AUDIT_ROWS = 25
OLD_KEY_ROWS = 20  # retired and revoked keys shown (newest first)
TENANTS_PER_PAGE = 100
STATE_ORDER = {
    KeyState.NEXT: 0,
    KeyState.CURRENT: 1,
    KeyState.PREVIOUS: 2,
    KeyState.RETIRED: 3,
    KeyState.REVOKED: 3,
}


@dataclass(frozen=True)
class TenantRow:
    tenant: Tenant
    rotation_at: float | None  # when the scheduler rotates (activation of current + R)


@dataclass(frozen=True)
class TenantView:
    """Everything the tenant page shows: public key data, the plan, the picture, the audit."""

    tenant: Tenant
    keys: list[KeyRecord]  # published first (by state), then the newest retired/revoked
    hidden_old: int
    current: KeyRecord | None
    next: KeyRecord | None
    steps: list[Step]
    timeline: str
    audit: list[AuditRecord]
    now: float

    @property
    def published(self) -> list[KeyRecord]:
        return [k for k in self.keys if k.published]

    @property
    def current_pairs(self) -> list[tuple[str, str]]:
        """(kid, state) of the JWKS now, as the plan's steps give them."""
        return [(k.kid, k.state.value) for k in self.published]

    @property
    def rotation_at(self) -> float | None:
        cur = self.current
        if cur is None or cur.activated_at is None:
            return None
        return next_rotation_at(cur.activated_at, self.tenant.policy.rotation_period)

    @property
    def early_by(self) -> float | None:
        """How young the next key is, when rotating now would be early (warns)."""
        if self.next is None:
            return None
        margin = prepublication_margin(
            self.next.created_at, self.now, self.tenant.policy.prepublication
        )
        return self.now - self.next.created_at if margin < 0 else None


def _rotation_at(keys: list[KeyRecord], t: Tenant) -> float | None:
    cur = next((k for k in keys if k.state == KeyState.CURRENT), None)
    if cur is None or cur.activated_at is None:
        return None
    return next_rotation_at(cur.activated_at, t.policy.rotation_period)


class TenantRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/tenants", self.create, methods=["POST"]),
            Route("/t/{tenant}", self.show, methods=["GET"]),
        ]

    # --- the list -----------------------------------------------------------------------
    def _rows(self, me: Me, page_no: int) -> tuple[list[TenantRow], int]:
        svc, key = self.ctx.service, me.viewer.key
        if me.viewer.is_admin:
            tenants = svc.tenants()
        elif key.tenant is not None and me.viewer.can(Right.READ, key.tenant):
            tenants = [svc.tenant(key.tenant)]
        else:
            tenants = []
        chunk = tenants[(page_no - 1) * TENANTS_PER_PAGE : page_no * TENANTS_PER_PAGE]
        published = reads.published_keys(svc, chunk)
        return [TenantRow(t, _rotation_at(published.get(t.id, []), t)) for t in chunk], len(tenants)

    async def _list_page(
        self,
        request: Request,
        me: Me,
        *,
        form: dict[str, str] | None = None,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> Response:
        try:
            page_no = max(1, min(int(request.query_params.get("page", "1")), 10**6))
        except ValueError:
            page_no = 1
        rows, total = await self.ctx.run(self._rows, me, page_no)
        values = {"name": "", "issuer": "", **policy_values(Policy())}
        values.update(form or {})
        resp = self.ctx.render(
            request,
            "tenants.html",
            {
                "rows": rows,
                "page_no": page_no,
                "pages": max(1, -(-total // TENANTS_PER_PAGE)),
                "total": total,
                "can_read": me.viewer.is_admin or me.viewer.can(Right.READ, me.viewer.key.tenant),
                "form": values,
                "errors": errors or [],
                "algs": ALGS,
                "rsa_bits": RSA_BITS,
                "duration_fields": DURATION_FIELDS,
                "flash": self.ctx.take_flash(request, me, "*tenants"),
            },
            viewer=me.viewer,
            status=status,
        )
        return self.ctx.with_flash_cleared(request, resp)

    async def index(self, request: Request) -> Response:
        return await self._list_page(request, await self.ctx.me(request))

    async def create(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        form = await ctx.form(request, me)
        ctx.require(me.viewer, Right.GLOBAL)
        name = form.get("name", "").strip()
        issuer = form.get("issuer", "").strip()
        try:
            check_tenant_name(name)
            parsed = parse_policy(form, Policy())
            if not issuer:
                if ctx.issuer_for is None:
                    raise InvalidInputError("give the issuer URL")
                issuer = ctx.issuer_for(name)
            out = await ctx.run(
                ctx.service.create_tenant,
                name,
                issuer=issuer,
                policy=parsed.policy,
                force=parsed.force and me.viewer.is_admin,
                actor=me.viewer.principal.actor,
            )
        except UnsafePolicyError as exc:
            return await self._list_page(
                request, me, form=form, errors=exc.violations or [exc.detail], status=422
            )
        except InvalidInputError as exc:
            return await self._list_page(request, me, form=form, errors=[exc.detail], status=422)
        warnings = [f"forced past a timing rule: {v}" for v in out.violations]
        return ctx.flash_redirect(
            request,
            me,
            name,
            f"{ctx.base(request)}/t/{name}",
            {"ok": True, "msg": f"Created tenant {name} (issuer {issuer}).", "w": warnings},
        )

    # --- one tenant ---------------------------------------------------------------------
    def _view(self, name: str, key_href: Callable[[str], str]) -> TenantView:
        svc = self.ctx.service
        tenant, ring = svc.ring(name)
        now = svc.clock.now()
        live = sorted((k for k in ring.keys if k.published), key=lambda k: STATE_ORDER[k.state])
        old = sorted((k for k in ring.keys if not k.published), key=lambda k: -k.created_at)
        return TenantView(
            tenant=tenant,
            keys=[*live, *old[:OLD_KEY_ROWS]],
            hidden_old=max(0, len(old) - OLD_KEY_ROWS),
            current=ring.current,
            next=ring.next,
            steps=plan(ring, now, PLAN_HORIZON),
            timeline=timeline_svg(ring, now, key_href=key_href),
            audit=reads.audit_records(svc, tenant=name, limit=AUDIT_ROWS),
            now=now,
        )

    async def show(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        name = request.path_params["tenant"]
        ctx.require(me.viewer, Right.READ, name)
        base = ctx.base(request)

        view = await ctx.run(self._view, name, lambda kid: f"{base}/t/{name}/keys/{kid}")
        context: dict[str, Any] = {
            "view": view,
            "t": view.tenant,
            "p": view.tenant.policy,
            "can_manage": me.viewer.can(Right.MANAGE, name),
            "plan_rows": PLAN_ROWS,
            "flash": ctx.take_flash(request, me, name),
            "import_states": ["next", "current", "previous"],
        }
        resp = ctx.render(request, "tenant.html", context, viewer=me.viewer)
        return ctx.with_flash_cleared(request, resp)
