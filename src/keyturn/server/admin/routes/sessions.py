"""A tenant's OAuth clients, sessions and session policy, through the sessions service.

Rights as the sessions API has them: clients are listed with READ and changed with MANAGE;
sessions are listed with READ or SIGN and ended with SIGN or MANAGE; the session policy is
read with READ or SIGN and edited with MANAGE. Rights are checked before the tenant is looked
up, and every action is audited by the service as the signed-in key.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.durations import parse_duration
from keyturn.errors import ConflictError, InvalidInputError, NotFoundError
from keyturn.ring.policy import fmt_duration
from keyturn.server.admin.context import AdminContext, Me
from keyturn.server.admin.forms import reason as reason_of
from keyturn.server.admin.session import Viewer
from keyturn.server.auth import Right
from keyturn.sessions.model import (
    MAX_DESCRIPTION,
    MAX_SUBJECT_LENGTH,
    AuthMethod,
    GrantType,
    SessionPolicy,
    valid_client_id,
)
from keyturn.sessions.service import SessionService

MAX_FIELD = 1024  # scope, audience: bounded before the service sees them
SESSIONS_SHOWN = 200
POLICY_FIELDS = (
    ("access_ttl", "Access token lifetime"),
    ("idle_ttl", "Idle timeout (refresh token unused)"),
    ("absolute_ttl", "Absolute session lifetime"),
    ("reuse_grace", "Refresh token reuse grace (0-60s)"),
)


def require_any(ctx: AdminContext, viewer: Viewer, tenant: str, *rights: Right) -> None:
    """Any one of ``rights`` will do; refused (403) before the tenant is looked up."""
    right = next((r for r in rights if viewer.can(r, tenant)), rights[0])
    ctx.require(viewer, right, tenant)


def policy_values(p: SessionPolicy) -> dict[str, str]:
    return {name: fmt_duration(getattr(p, name)) for name, _ in POLICY_FIELDS}


def parse_session_policy(form: dict[str, str]) -> dict[str, float]:
    changes: dict[str, float] = {}
    for name, label in POLICY_FIELDS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        if raw in ("0", "0s"):
            changes[name] = 0.0
            continue
        try:
            changes[name] = parse_duration(raw)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label}: {exc.detail}") from None
    return changes


class SessionRoutes:
    def __init__(self, ctx: AdminContext, sessions: SessionService) -> None:
        self.ctx = ctx
        self.sessions = sessions

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/clients", self.clients, methods=["GET"]),
            Route("/t/{tenant}/clients", self.create_client, methods=["POST"]),
            Route("/t/{tenant}/clients/{client_id}/rotate", self.rotate, methods=["POST"]),
            Route("/t/{tenant}/clients/{client_id}/revoke", self.revoke_client, methods=["POST"]),
            Route("/t/{tenant}/sessions", self.session_list, methods=["GET"]),
            Route("/t/{tenant}/sessions/logout", self.logout_subject, methods=["POST"]),
            Route("/t/{tenant}/sessions/{sid}/revoke", self.revoke_session, methods=["POST"]),
            Route("/t/{tenant}/session-policy", self.policy, methods=["GET"]),
            Route("/t/{tenant}/session-policy", self.set_policy, methods=["POST"]),
        ]

    @staticmethod
    def _scope(tenant: str, page: str) -> str:
        return f"{tenant}/{page}"

    # --- OAuth clients ---------------------------------------------------------------------
    async def _clients_page(
        self,
        request: Request,
        me: Me,
        tenant: str,
        *,
        created: tuple[str, str] | None = None,
        form: dict[str, str] | None = None,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> Response:
        ctx = self.ctx
        show_revoked = request.query_params.get("revoked") == "1"
        clients = await ctx.run(self.sessions.clients, tenant, include_revoked=show_revoked)
        resp = ctx.render(
            request,
            "clients.html",
            {
                "tenant": tenant,
                "clients": clients,
                "created": created,
                "show_revoked": show_revoked,
                "can_manage": me.viewer.can(Right.MANAGE, tenant),
                "auth_methods": [m.value for m in AuthMethod],
                "grant_types": [g.value for g in GrantType],
                "form": {
                    "auth_method": AuthMethod.BASIC.value,
                    "scope": "",
                    "audience": "",
                    "description": "",
                    "grants": [g.value for g in GrantType],
                    **(form or {}),
                },
                "max_description": MAX_DESCRIPTION,
                "errors": errors or [],
                "flash": ctx.take_flash(request, me, self._scope(tenant, "clients")),
            },
            viewer=me.viewer,
            status=status,
        )
        return ctx.with_flash_cleared(request, resp)

    async def clients(self, request: Request) -> Response:
        me = await self.ctx.me(request)
        tenant = request.path_params["tenant"]
        self.ctx.require(me.viewer, Right.READ, tenant)
        return await self._clients_page(request, me, tenant)

    async def create_client(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        form = await ctx.form(request, me)
        ctx.require(me.viewer, Right.MANAGE, tenant)
        # One checkbox per grant type (the form reader keeps one value per name).
        grants = [g.value for g in GrantType if form.get(f"grant_{g.value}") == "yes"]
        kept: dict[str, Any] = {k: form.get(k, "") for k in ("auth_method", "scope", "audience")}
        kept["description"] = form.get("description", "")
        kept["grants"] = grants
        try:
            if any(len(str(v)) > MAX_FIELD for v in kept.values() if isinstance(v, str)):
                raise InvalidInputError(f"a field is longer than {MAX_FIELD} characters")
            client, secret = await ctx.run(
                self.sessions.create_client,
                tenant,
                actor=me.viewer.principal.actor,
                auth_method=kept["auth_method"],
                grant_types=grants,
                scope=kept["scope"].strip() or None,
                audience=kept["audience"].strip() or None,
                description=kept["description"].strip() or None,
            )
        except InvalidInputError as exc:
            return await self._clients_page(
                request, me, tenant, form=kept, errors=[exc.detail], status=422
            )
        # The secret is shown once, on this response only (never in a cookie or a URL).
        return await self._clients_page(
            request, me, tenant, created=(client.client_id, secret or ""), status=201
        )

    def _client_id(self, request: Request) -> str:
        client_id = str(request.path_params["client_id"])
        if not valid_client_id(client_id):
            raise NotFoundError("no such OAuth client")
        return client_id

    async def rotate(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        await ctx.form(request, me)
        ctx.require(me.viewer, Right.MANAGE, tenant)
        client_id = self._client_id(request)
        try:
            client, secret = await ctx.run(
                self.sessions.rotate_secret, tenant, client_id, actor=me.viewer.principal.actor
            )
        except (InvalidInputError, ConflictError) as exc:
            return await self._clients_page(request, me, tenant, errors=[exc.detail], status=422)
        return await self._clients_page(
            request, me, tenant, created=(client.client_id, secret), status=200
        )

    async def revoke_client(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        await ctx.form(request, me)
        ctx.require(me.viewer, Right.MANAGE, tenant)
        client_id = self._client_id(request)
        await ctx.run(
            self.sessions.revoke_client, tenant, client_id, actor=me.viewer.principal.actor
        )
        return ctx.flash_redirect(
            request,
            me,
            self._scope(tenant, "clients"),
            f"{ctx.base(request)}/t/{tenant}/clients",
            {"ok": True, "msg": f"Revoked OAuth client {client_id} and its sessions.", "w": []},
        )

    # --- sessions --------------------------------------------------------------------------
    async def session_list(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        require_any(ctx, me.viewer, tenant, Right.READ, Right.SIGN)
        subject = request.query_params.get("subject", "").strip()[: MAX_SUBJECT_LENGTH + 1]
        ended = request.query_params.get("ended") == "1"
        errors: list[str] = []
        try:
            rows = await ctx.run(
                self.sessions.sessions,
                tenant,
                subject=subject or None,
                include_ended=ended,
                limit=SESSIONS_SHOWN,
            )
        except InvalidInputError as exc:
            rows, errors = [], [exc.detail]
        resp = ctx.render(
            request,
            "sessions.html",
            {
                "tenant": tenant,
                "sessions": rows,
                "subject": subject,
                "ended": ended,
                "shown": SESSIONS_SHOWN,
                "can_end": any(me.viewer.can(r, tenant) for r in (Right.SIGN, Right.MANAGE)),
                "errors": errors,
                "flash": ctx.take_flash(request, me, self._scope(tenant, "sessions")),
            },
            viewer=me.viewer,
            status=422 if errors else 200,
        )
        return ctx.with_flash_cleared(request, resp)

    def _back(self, request: Request, me: Me, tenant: str, ok: bool, msg: str) -> Response:
        return self.ctx.flash_redirect(
            request,
            me,
            self._scope(tenant, "sessions"),
            f"{self.ctx.base(request)}/t/{tenant}/sessions",
            {"ok": ok, "msg": msg, "w": []},
        )

    async def revoke_session(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        form = await ctx.form(request, me)
        require_any(ctx, me.viewer, tenant, Right.SIGN, Right.MANAGE)
        sid = str(request.path_params["sid"])[:64]
        try:
            why = reason_of(form, required=False)
            sess = await ctx.run(
                self.sessions.revoke_session,
                tenant,
                sid,
                actor=me.viewer.principal.actor,
                reason=why,
            )
        except InvalidInputError as exc:
            return self._back(request, me, tenant, False, exc.detail)
        return self._back(
            request, me, tenant, True, f"Revoked session {sess.session_id} of {sess.subject}."
        )

    async def logout_subject(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        form = await ctx.form(request, me)
        require_any(ctx, me.viewer, tenant, Right.SIGN, Right.MANAGE)
        subject = form.get("subject", "").strip()
        typed = form.get("confirm_subject", "").strip()
        try:
            if not subject:
                raise InvalidInputError("give the subject to log out everywhere")
            if typed != subject:
                raise InvalidInputError(
                    f"not logged out: type the subject {subject[:MAX_SUBJECT_LENGTH]!r} "
                    "again to confirm"
                )
            why = reason_of(form, required=False)
            ended = await ctx.run(
                self.sessions.revoke_subject,
                tenant,
                subject,
                actor=me.viewer.principal.actor,
                reason=why,
            )
        except InvalidInputError as exc:
            return self._back(request, me, tenant, False, exc.detail)
        return self._back(
            request, me, tenant, True, f"Logged {subject} out everywhere: {len(ended)} sessions."
        )

    # --- session policy --------------------------------------------------------------------
    async def _policy_page(
        self,
        request: Request,
        me: Me,
        tenant: str,
        *,
        form: dict[str, str] | None = None,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> Response:
        ctx = self.ctx
        current = await ctx.run(self.sessions.policy, tenant)
        resp = ctx.render(
            request,
            "session_policy.html",
            {
                "tenant": tenant,
                "current": policy_values(current),
                "fields": POLICY_FIELDS,
                "form": form or {},
                "can_manage": me.viewer.can(Right.MANAGE, tenant),
                "errors": errors or [],
                "flash": ctx.take_flash(request, me, self._scope(tenant, "session-policy")),
            },
            viewer=me.viewer,
            status=status,
        )
        return ctx.with_flash_cleared(request, resp)

    async def policy(self, request: Request) -> Response:
        me = await self.ctx.me(request)
        tenant = request.path_params["tenant"]
        require_any(self.ctx, me.viewer, tenant, Right.READ, Right.SIGN)
        return await self._policy_page(request, me, tenant)

    async def set_policy(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        tenant = request.path_params["tenant"]
        form = await ctx.form(request, me)
        ctx.require(me.viewer, Right.MANAGE, tenant)
        typed = {name: form.get(name, "")[:64] for name, _ in POLICY_FIELDS}
        try:
            new = await ctx.run(
                self.sessions.set_policy,
                tenant,
                actor=me.viewer.principal.actor,
                **parse_session_policy(typed),
            )
        except InvalidInputError as exc:
            return await self._policy_page(
                request, me, tenant, form=typed, errors=[exc.detail], status=422
            )
        shown = ", ".join(f"{k} {v}" for k, v in policy_values(new).items())
        return ctx.flash_redirect(
            request,
            me,
            self._scope(tenant, "session-policy"),
            f"{ctx.base(request)}/t/{tenant}/session-policy",
            {"ok": True, "msg": f"Session policy saved: {shown}.", "w": []},
        )
