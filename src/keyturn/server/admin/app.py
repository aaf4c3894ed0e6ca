"""``build_admin``: the console's routes, error pages and security headers as one ASGI app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from keyturn.errors import KeyturnError
from keyturn.server.admin.context import AdminContext, NeedSignIn
from keyturn.server.admin.routes.apikeys import ApiKeyRoutes
from keyturn.server.admin.routes.audit import AuditRoutes
from keyturn.server.admin.routes.auth import AuthRoutes
from keyturn.server.admin.routes.keys import KeyRoutes
from keyturn.server.admin.routes.policy import PolicyRoutes
from keyturn.server.admin.routes.sessions import SessionRoutes
from keyturn.server.admin.routes.tenants import TenantRoutes
from keyturn.server.admin.security import SecurityHeaders
from keyturn.server.admin.session import Refused, Signer, Viewer
from keyturn.server.admin.templating import templates
from keyturn.server.problems import status_for
from keyturn.server.public import ASGIApp
from keyturn.service import KeyService
from keyturn.sessions.service import SessionService
from keyturn.store.apikeys import ApiKeyStore

STATIC_DIR = Path(__file__).parent / "static"


class ErrorPages:
    """Refusals and errors as pages (never a traceback, never a JSON problem in a browser)."""

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _page(
        self, request: Request, title: str, message: str, status: int, viewer: Viewer | None
    ) -> Response:
        return self.ctx.render(
            request,
            "message.html",
            {"title": title, "message": message},
            viewer=viewer,
            status=status,
        )

    async def need_sign_in(self, request: Request, exc: Exception) -> Response:
        return self.ctx.to_login(request)

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        viewer = await self.ctx.viewer_or_none(request)
        return self._page(request, exc.title, exc.message, exc.status, viewer)

    async def keyturn_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyturnError)
        status = status_for(exc)
        if status == 404:
            title, message = "Not found", exc.detail if "key" in exc.code else "No such tenant."
        elif status >= 500:
            title, message = "Unavailable", "The key store is unavailable; try again shortly."
        else:
            title, message = "Refused", exc.detail
        viewer = await self.ctx.viewer_or_none(request)
        return self._page(request, title, message, status if status >= 400 else 500, viewer)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "Not found" if exc.status_code == 404 else "Refused"
        return self._page(request, title, str(exc.detail), exc.status_code, None)


def build_admin(
    service: KeyService,
    api_keys: ApiKeyStore,
    *,
    session_key: bytes | None = None,
    issuer_for: Callable[[str], str] | None = None,
    sessions: SessionService | None = None,
) -> ASGIApp:
    """The admin sub-application; mount it at ``/admin`` of the FastAPI app.

    ``session_key``: the HMAC key of sessions (at least 32 bytes); by default random per
    process, so a restart signs everybody out. ``issuer_for``: a new tenant's default issuer.
    """
    ctx = AdminContext(service, api_keys, Signer(session_key), templates(), issuer_for)
    routes: list[BaseRoute] = []
    for unit in (
        AuthRoutes(ctx),
        TenantRoutes(ctx),
        KeyRoutes(ctx),
        PolicyRoutes(ctx),
        SessionRoutes(ctx, sessions or SessionService(service)),
        ApiKeyRoutes(ctx),
        AuditRoutes(ctx),
    ):
        routes += unit.routes()
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    errors = ErrorPages(ctx)
    app = Starlette(
        routes=routes,
        exception_handlers={
            NeedSignIn: errors.need_sign_in,
            Refused: errors.refused,
            KeyturnError: errors.keyturn_error,
            HTTPException: errors.http_error,
        },
    )
    return SecurityHeaders(app)
