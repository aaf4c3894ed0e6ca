"""API keys (admin only, a global right): list with last use, create (shown once), revoke."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.errors import InvalidInputError, NotFoundError
from keyturn.server.admin.context import AdminContext, Me
from keyturn.server.auth import RIGHTS, Right
from keyturn.store.apikeys import ApiKey, Role

KEY_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")
SCOPE = "*apikeys"


class ApiKeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/apikeys", self.index, methods=["GET"]),
            Route("/apikeys", self.create, methods=["POST"]),
            Route("/apikeys/{key_id}/revoke", self.revoke, methods=["POST"]),
        ]

    async def _page(
        self,
        request: Request,
        me: Me,
        *,
        created: str | None = None,
        form: dict[str, str] | None = None,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> Response:
        ctx = self.ctx
        show_revoked = request.query_params.get("revoked") == "1"

        def load() -> tuple[list[ApiKey], list[str]]:
            keys = ctx.api_keys.list(include_revoked=show_revoked)
            keys.sort(key=lambda k: (k.revoked_at is not None, -k.created_at))
            return keys, [t.name for t in ctx.service.tenants()]

        keys, tenants = await ctx.run(load)
        resp = ctx.render(
            request,
            "apikeys.html",
            {
                "keys": keys,
                "tenants": tenants,
                "roles": [r.value for r in Role],
                "rights": {r.value: sorted(x.value for x in RIGHTS[r]) for r in Role},
                "created": created,
                "form": {"role": "viewer", "tenant": "", "description": "", **(form or {})},
                "errors": errors or [],
                "show_revoked": show_revoked,
                "flash": ctx.take_flash(request, me, SCOPE),
            },
            viewer=me.viewer,
            status=status,
        )
        return ctx.with_flash_cleared(request, resp)

    async def index(self, request: Request) -> Response:
        me = await self.ctx.me(request)
        self.ctx.require(me.viewer, Right.GLOBAL)
        return await self._page(request, me)

    async def create(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        form = await ctx.form(request, me)
        ctx.require(me.viewer, Right.GLOBAL)
        role = form.get("role", "")
        tenant = form.get("tenant", "").strip() or None
        description = form.get("description", "").strip() or None
        try:
            rec, token = await ctx.run(
                ctx.api_keys.create,
                role,
                tenant=None if role == Role.ADMIN.value else tenant,
                description=description,
                actor=me.viewer.principal.actor,
            )
        except (InvalidInputError, NotFoundError) as exc:
            return await self._page(request, me, form=form, errors=[exc.detail], status=422)
        # Shown once, on this response only (never in a cookie or a URL); no-store is set.
        return await self._page(request, me, created=token, status=201)

    async def revoke(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        await ctx.form(request, me)  # same-site and CSRF checks
        ctx.require(me.viewer, Right.GLOBAL)
        key_id = request.path_params["key_id"]
        if not KEY_ID_RE.match(key_id):
            raise NotFoundError("no such API key")
        rec = await ctx.run(ctx.api_keys.revoke, key_id, actor=me.viewer.principal.actor)
        if key_id == me.viewer.key.key_id:
            return ctx.to_login(request)  # revoked the key this session stands on
        return ctx.flash_redirect(
            request,
            me,
            SCOPE,
            f"{ctx.base(request)}/apikeys",
            {"ok": True, "msg": f"Revoked API key {rec.key_id} ({rec.role.value}).", "w": []},
        )
