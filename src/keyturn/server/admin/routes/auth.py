"""Sign in with an API key (POSTed, never in a URL), sign out."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keyturn.server.admin.context import AdminContext
from keyturn.server.admin.session import (
    LOGIN_COOKIE,
    LOGIN_TTL,
    SESSION_COOKIE,
    SESSION_TTL,
    check_csrf,
    read_form,
)

GENERIC_FAILURE = "Invalid or revoked API key."


class AuthRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.login_get, methods=["GET"]),
            Route("/login", self.login_post, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    def _page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        ctx = self.ctx
        nonce = secrets.token_hex(16)
        resp = ctx.render(
            request,
            "login.html",
            {"login_token": ctx.signer.login_token(nonce), "error": error},
            viewer=None,
            status=status,
        )
        ctx.set_cookie(
            request, resp, LOGIN_COOKIE, nonce, LOGIN_TTL, path=ctx.base(request) + "/login"
        )
        return resp

    async def login_get(self, request: Request) -> Response:
        if await self.ctx.current(request) is not None:
            return RedirectResponse(self.ctx.base(request) + "/", status_code=303)
        return self._page(request)

    async def login_post(self, request: Request) -> Response:
        ctx = self.ctx
        form = await read_form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not ctx.signer.check("login", nonce, form.get("login_token", "")):
            return self._page(request, "The sign-in form expired. Please try again.", 400)
        key = await ctx.run(ctx.api_keys.authenticate, form.get("api_key", "").strip())
        if key is None:
            # One message for malformed, unknown, wrong and revoked keys: no key id oracle.
            return self._page(request, GENERIC_FAILURE, 401)
        value, _ = ctx.signer.issue(key.key_id, ctx.now())
        resp = RedirectResponse(ctx.base(request) + "/", status_code=303)
        ctx.set_cookie(request, resp, SESSION_COOKIE, value, SESSION_TTL)
        ctx.clear_cookie(request, resp, LOGIN_COOKIE, path=ctx.base(request) + "/login")
        return resp

    async def logout(self, request: Request) -> Response:
        me = await self.ctx.current(request)
        if me is not None:
            check_csrf(self.ctx.signer, me.session, await read_form(request))
        return self.ctx.to_login(request)
