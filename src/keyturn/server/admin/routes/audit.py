"""The audit log: every tenant (admin) or one's own, filtered, paged, in full; the chain check."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keyturn.ring.model import TENANT_NAME_RE
from keyturn.ring.records import AuditRecord
from keyturn.server.admin import reads
from keyturn.server.admin.context import AdminContext
from keyturn.server.admin.session import Refused
from keyturn.server.auth import Right

AUDIT_PAGE = 50
EVENTS = [
    "tenant.created",
    "policy.changed",
    "policy.forced",
    "key.created",
    "key.rotated",
    "key.revoked",
    "key.replaced_all",
    "key.retired",
    "key.imported",
    "key.retention_extended",
    "apikey.created",
    "apikey.revoked",
    "master_key.rotated",
]
_EVENT_RE = re.compile(r"^[a-z_.]{1,64}\Z")
_CURSOR_RE = re.compile(r"^[0-9]{1,18}\Z")
_TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_utc(text: str, field: str) -> float | None:
    """A UTC time from a form: '2026-12-01T21:40' (datetime-local), or a date."""
    text = text.strip()
    if not text:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise Refused(422, "Invalid filter", f"{field}: use a UTC time like 2026-12-01T21:40")


@dataclass(frozen=True)
class Filters:
    tenant: str
    event: str
    actor: str
    since: str
    until: str

    def query(self, **extra: str) -> str:
        params = {k: v for k, v in self.__dict__.items() if v}
        params.update({k: v for k, v in extra.items() if v})
        return urlencode(params)


class AuditRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [Route("/audit", self.index, methods=["GET"])]

    async def index(self, request: Request) -> Response:
        ctx = self.ctx
        me = await ctx.me(request)
        q = request.query_params
        viewer = me.viewer
        tenant = q.get("tenant", "").strip()[:63]
        if not viewer.is_admin:
            # A scoped key reads its own tenant's records only (as the API's /audit).
            tenant = viewer.key.tenant or ""
        if tenant:
            ctx.require(viewer, Right.READ, tenant)
        else:
            ctx.require(viewer, Right.GLOBAL)
        if tenant and not TENANT_NAME_RE.match(tenant):
            raise Refused(404, "Not found", "No such tenant.")
        event = q.get("event", "").strip()
        if event and not _EVENT_RE.match(event):
            raise Refused(422, "Invalid filter", "event: letters, dots and underscores only")
        actor = q.get("actor", "").strip()[:200]
        cursor = q.get("before", "")
        if cursor and not _CURSOR_RE.match(cursor):
            raise Refused(422, "Invalid filter", "before: a record id")
        filters = Filters(tenant, event, actor, q.get("since", "")[:32], q.get("until", "")[:32])
        since = parse_utc(filters.since, "since")
        until = parse_utc(filters.until, "until")
        check = q.get("check") == "1" and viewer.is_admin

        def load() -> tuple[list[AuditRecord], list[str] | None, list[str]]:
            recs = reads.audit_records(
                ctx.service,
                tenant=tenant or None,
                event=event or None,
                actor=actor or None,
                since=since,
                until=until,
                before_id=int(cursor) if cursor else None,
                limit=AUDIT_PAGE + 1,
            )
            problems = reads.audit_chain_problems(ctx.service) if check else None
            tenants = [t.name for t in ctx.service.tenants()] if viewer.is_admin else [tenant]
            return recs, problems, tenants

        recs, problems, tenants = await ctx.run(load)
        more = len(recs) > AUDIT_PAGE
        recs = recs[:AUDIT_PAGE]
        return ctx.render(
            request,
            "audit.html",
            {
                "records": recs,
                "filters": filters,
                "older": filters.query(before=str(recs[-1].id)) if more and recs else None,
                "newest": filters.query() if cursor else None,
                "problems": problems,
                "tenants": tenants,
                "events": EVENTS,
                "page_size": AUDIT_PAGE,
                "scoped": not viewer.is_admin,
            },
            viewer=viewer,
        )
