"""Edit a tenant's policy: the timing rules checked before saving, and the plan it would give."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.errors import InvalidInputError, UnsafePolicyError
from keyturn.keys.algorithms import ALLOWED_RSA_BITS
from keyturn.ring.model import Policy
from keyturn.ring.policy import policy_violations
from keyturn.ring.records import Tenant
from keyturn.ring.ring import Ring
from keyturn.ring.timeline import Step, plan
from keyturn.server.admin.context import AdminContext, Me
from keyturn.server.admin.forms import ALGS, DURATION_FIELDS, RSA_BITS, PolicyForm, parse_policy
from keyturn.server.admin.forms import policy_values as values_of
from keyturn.server.admin.timeline import timeline_svg
from keyturn.server.auth import Right

PREVIEW_HORIZON = 30 * 86400
PREVIEW_ROWS = 6


def violations_of(policy: Policy) -> list[str]:
    """Every rule ``policy`` breaks, worded as the CLI and the API word them."""
    out = policy_violations(policy)
    if policy.rsa_bits not in ALLOWED_RSA_BITS:
        out.append(f"RSA key size must be one of {ALLOWED_RSA_BITS} (got {policy.rsa_bits})")
    return out


@dataclass(frozen=True)
class Preview:
    """The plan now and the plan under the proposed policy, side by side."""

    policy: Policy
    violations: list[str]
    steps_now: list[Step]
    steps_new: list[Step] | None  # None: the policy is not even well-formed
    timeline_new: str
    alg_changes: bool
    now_pairs: list[tuple[str, str]]
    signing: str | None


def preview(tenant: Tenant, ring: Ring, policy: Policy, now: float, base: str) -> Preview:
    """What saving would do, computed as ``set_policy`` does it, without saving."""
    violations = violations_of(policy)
    steps_now = plan(ring, now, PREVIEW_HORIZON)
    structural = any("must" in v for v in violations)
    pairs = [(k.kid, k.state.value) for k in ring.published]
    signing = ring.current.kid if ring.current else None
    if structural:
        return Preview(policy, violations, steps_now, None, "", False, pairs, signing)
    sim = Ring(ring.tenant, policy, list(ring.keys))
    sim.extend_retention(now)  # as set_policy does: previous keys keep the new retention
    href = f"{base}/t/{tenant.name}/keys/"
    return Preview(
        policy,
        violations,
        steps_now,
        plan(sim, now, PREVIEW_HORIZON),
        timeline_svg(sim, now, key_href=lambda kid: href + kid, ident="tl-new"),
        (policy.alg, policy.rsa_bits) != (tenant.policy.alg, tenant.policy.rsa_bits),
        pairs,
        signing,
    )


class PolicyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/policy", self.edit, methods=["GET"]),
            Route("/t/{tenant}/policy", self.post, methods=["POST"]),
        ]

    async def _page(
        self,
        request: Request,
        me: Me,
        name: str,
        parsed: PolicyForm | None,
        *,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> Response:
        ctx = self.ctx
        base = ctx.base(request)

        def load() -> tuple[Tenant, Preview | None]:
            tenant, ring = ctx.service.ring(name)
            if parsed is None:
                return tenant, None
            return tenant, preview(tenant, ring, parsed.policy, ctx.now(), base)

        tenant, pv = await ctx.run(load)
        values = parsed.values if parsed is not None else values_of(tenant.policy)
        return ctx.render(
            request,
            "policy.html",
            {
                "t": tenant,
                "p": tenant.policy,
                "values": values,
                "force": parsed.force if parsed is not None else False,
                "preview": pv,
                "errors": errors or [],
                "algs": ALGS,
                "rsa_bits": RSA_BITS,
                "duration_fields": DURATION_FIELDS,
                "rows": PREVIEW_ROWS,
            },
            viewer=me.viewer,
            status=status,
        )

    async def edit(self, request: Request) -> Response:
        me = await self.ctx.me(request)
        name = request.path_params["tenant"]
        self.ctx.require(me.viewer, Right.MANAGE, name)
        return await self._page(request, me, name, None)

    async def post(self, request: Request) -> Response:
        """``op=check`` previews (changes nothing); ``op=save`` saves unless a rule is broken."""
        ctx = self.ctx
        me = await ctx.me(request)
        name = request.path_params["tenant"]
        form = await ctx.form(request, me)
        ctx.require(me.viewer, Right.MANAGE, name)
        current = await ctx.run(ctx.service.tenant, name)
        try:
            parsed = parse_policy(form, current.policy)
        except InvalidInputError as exc:
            return await self._page(request, me, name, None, errors=[exc.detail], status=422)
        if form.get("op") != "save":
            return await self._page(request, me, name, parsed)
        change = parsed.change_from(current.policy)
        if change.empty:
            return await self._page(
                request, me, name, parsed, errors=["nothing to change"], status=422
            )
        changes = change.fields()
        try:
            out = await ctx.run(
                ctx.service.change_policy,
                name,
                change,
                actor=me.viewer.principal.actor,
                force=parsed.force,
            )
        except UnsafePolicyError as exc:
            # The refused rule and its numbers, on the form the operator filled in.
            return await self._page(
                request, me, name, parsed, errors=exc.violations or [exc.detail], status=422
            )
        except InvalidInputError as exc:
            return await self._page(request, me, name, parsed, errors=[exc.detail], status=422)
        warnings = [f"forced past a timing rule: {v}" for v in out.violations] + out.warnings
        return ctx.flash_redirect(
            request,
            me,
            name,
            f"{ctx.base(request)}/t/{name}",
            {
                "ok": True,
                "msg": f"Policy of {name} saved: {', '.join(sorted(changes))}.",
                "w": warnings,
            },
        )
