"""What every console route needs: the service, the API keys, the signer and the templates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from keyturn.errors import KeyturnError
from keyturn.ring.model import TENANT_NAME_RE
from keyturn.server.admin.session import (
    FLASH_COOKIE,
    FLASH_TTL,
    SESSION_COOKIE,
    Flash,
    Refused,
    Session,
    Signer,
    Viewer,
    check_csrf,
    read_form,
    trim_flash,
)
from keyturn.server.auth import Right
from keyturn.service import KeyService
from keyturn.store.apikeys import ApiKeyNotFoundError, ApiKeyStore

T = TypeVar("T")


class NeedSignIn(Exception):
    """No valid session: the handler answers with a redirect to the sign-in page."""


@dataclass(frozen=True)
class Me:
    """The signed-in operator and their session."""

    viewer: Viewer
    session: Session


@dataclass(frozen=True)
class AdminContext:
    service: KeyService
    api_keys: ApiKeyStore
    signer: Signer
    templates: Jinja2Templates
    issuer_for: Callable[[str], str] | None = None

    # --- plumbing -----------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking service calls run in the thread pool, off the event loop."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

    def now(self) -> float:
        return self.service.clock.now()

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") or "/admin"

    @classmethod
    def site(cls, request: Request) -> str:
        """Where the public documents are: the server root the console is mounted under."""
        base = cls.base(request)
        return base[: -len("/admin")] if base.endswith("/admin") else ""

    def set_cookie(
        self, request: Request, resp: Response, name: str, value: str, max_age: int, path: str = ""
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path or self.base(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, request: Request, resp: Response, name: str, path: str = "") -> None:
        resp.delete_cookie(
            name,
            path=path or self.base(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def to_login(self, request: Request) -> Response:
        resp = RedirectResponse(self.base(request) + "/login", status_code=303)
        if SESSION_COOKIE in request.cookies:
            self.clear_cookie(request, resp, SESSION_COOKIE)
        return resp

    # --- who is asking ------------------------------------------------------------------
    async def current(self, request: Request) -> Me | None:
        """The signed-in operator: a valid cookie *and* an API key that is still active.

        The key row is re-read on every request, so a revoked key loses its session at once
        and a changed role or tenant applies at once.
        """
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        sess = self.signer.open(raw, self.now())
        if sess is None:
            return None
        try:
            key = await self.run(self.api_keys.get, sess.key_id)
        except ApiKeyNotFoundError:
            return None
        if not key.active:
            return None
        return Me(Viewer(key, self.signer.csrf(sess), sess.expires), sess)

    async def me(self, request: Request) -> Me:
        me = await self.current(request)
        if me is None:
            raise NeedSignIn
        return me

    async def viewer_or_none(self, request: Request) -> Viewer | None:
        try:
            me = await self.current(request)
        except KeyturnError:
            return None
        return me.viewer if me else None

    async def form(self, request: Request, me: Me) -> dict[str, str]:
        """A posted form, after the same-site and CSRF checks."""
        form = await read_form(request)
        check_csrf(self.signer, me.session, form)
        return form

    @staticmethod
    def require(viewer: Viewer, right: Right, tenant: str | None = None) -> None:
        # Checked before the tenant is looked up: a scoped key learns nothing of other tenants.
        if not viewer.can(right, tenant):
            raise Refused(403, "Not allowed", "This API key may not do that here.")
        if tenant is not None and not TENANT_NAME_RE.match(tenant):
            raise Refused(404, "Not found", "No such tenant.")

    # --- pages --------------------------------------------------------------------------
    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        viewer: Viewer | None,
        status: int = 200,
    ) -> Response:
        ctx = {
            "base": self.base(request),
            "site": self.site(request),
            "viewer": viewer,
            "Right": Right,
            "now": self.now(),
            "flash": None,
            **context,
        }
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def flash_redirect(
        self, request: Request, me: Me, scope: str, url: str, data: dict[str, Any]
    ) -> Response:
        """Redirect after POST, with the result shown once on the page at ``url``."""
        resp = RedirectResponse(url, status_code=303)
        value = self.signer.flash(me.session, scope, trim_flash(data), self.now())
        self.set_cookie(request, resp, FLASH_COOKIE, value, FLASH_TTL)
        return resp

    def take_flash(self, request: Request, me: Me, scope: str) -> Flash | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        data = self.signer.open_flash(me.session, scope, raw, self.now())
        if data is None:
            return None
        return Flash(
            ok=bool(data.get("ok")),
            message=str(data.get("msg", "")),
            warnings=[str(w) for w in data.get("w", [])],
        )

    def with_flash_cleared(self, request: Request, resp: Response) -> Response:
        if FLASH_COOKIE in request.cookies:
            self.clear_cookie(request, resp, FLASH_COOKIE)
        return resp
