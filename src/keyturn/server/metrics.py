"""Prometheus metrics for ``keyturn serve``: counts kept in plain dicts, rendered at scrape time.

The names, types and labels are the contract in ``docs/metrics.md`` (the alert rules in
``deploy/prometheus/alerts.yml`` depend on them). Every app has its own ``CollectorRegistry``,
never prometheus_client's global one, and one collector renders everything:

- counters are ints in dicts, bumped by hooks the app calls (the JWKS hot path, the API, the
  scheduler, error handlers). The hot path does one dict update on the event-loop thread and
  takes no lock; the other hooks run in worker threads and take one.
- per-tenant gauges are computed from the store at scrape time with one query (two when the
  tenant cap is reached), and only for ``tenant_gauges`` tenants: the ones whose rotation is
  soonest (overdue first), so a cap never hides the tenants the alerts are about.
- if the store is down at scrape time the gauges are skipped and the counters still served.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Literal

import anyio.to_thread
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from keyturn.errors import StoreUnavailableError
from keyturn.ring.policy_contract import next_rotation_at, prepublication_margin
from keyturn.ring.records import RotationRow
from keyturn.server.problems import PROBLEM_CONTENT_TYPE, problem_bytes
from keyturn.server.public import ASGIApp, Receive, Scope, Send
from keyturn.service import KeyService, Outcome

log = logging.getLogger("keyturn.server.metrics")

DEFAULT_TENANT_GAUGES = 1000
# The classic text format every Prometheus 2 and 3 reads; our names need nothing newer (recent
# prometheus_client advertise 1.0.0, the UTF-8 names format, by default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
StoreOperation = Literal["read", "write"]
Trigger = Literal["scheduled", "manual"]

# Not a tenant name (those are [a-z0-9-]): the label of JWKS answers for paths that named no
# existing tenant (404, 405, 503). An empty label value is an absent label in Prometheus, and
# arbitrary path segments must never become label values: anyone could mint series.
NO_TENANT = ""


class _Counts:
    """A thread-safe counter per label tuple."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], int] = {}

    def inc(self, *labels: str, by: int = 1) -> None:
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0) + by

    def snapshot(self) -> dict[tuple[str, ...], int]:
        with self._lock:
            return dict(self._counts)


class ServerMetrics:
    """The metrics of one ``keyturn serve`` app (the :class:`keyturn.server.app.Metrics` hook).

    ``tenant_gauges``: how many tenants get the per-tenant gauges at most (0: none).
    ``token``: if set, ``/metrics`` requires ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        service: KeyService,
        *,
        tenant_gauges: int = DEFAULT_TENANT_GAUGES,
        token: str | None = None,
    ) -> None:
        if tenant_gauges < 0:
            raise ValueError("tenant_gauges must be 0 or more")
        if token is not None and not token:
            raise ValueError("token must not be empty")
        self.service = service
        self.tenant_gauges = tenant_gauges
        self.token = token
        # JWKS answers, tenant -> count: written only from the event loop (the hot path), one
        # dict per common status (a tuple key costs a tuple hash per request: about 2x slower).
        self._jwks_200: defaultdict[str, int] = defaultdict(int)
        self._jwks_304: defaultdict[str, int] = defaultdict(int)
        self._jwks_other = _Counts()  # (status,), for tenant NO_TENANT
        self._signed = _Counts()  # (tenant, kid)
        self._verified = _Counts()  # (tenant, outcome, reason)
        self._rotations = _Counts()  # (tenant, trigger)
        self._revocations = _Counts()  # (tenant,)
        self._runs = _Counts()  # (result,)
        self._store_errors = _Counts()  # (operation,)
        self._last_success: float | None = None
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # --- hooks ---------------------------------------------------------------------------
    def public_response(self, kind: str, status: int, tenant: str) -> None:
        """The hot path: one public document answered (called on the event-loop thread)."""
        if kind == "jwks":
            if status == 200:
                self._jwks_200[tenant] += 1
                return
            if status == 304:
                self._jwks_304[tenant] += 1
                return
            self._jwks_other.inc(str(status))
        if status == 503:
            self.store_error("read")

    def signed(self, tenant: str, token: str) -> None:
        """A token was signed (the kid is read back from its header: no store access)."""
        self._signed.inc(tenant, _kid_of(token))

    def verified(self, tenant: str, reason: str) -> None:
        """A verification by the API: ``reason`` is ``ok`` or the error code."""
        self._verified.inc(tenant, "success" if reason == "ok" else "failure", reason)

    def changed(self, outcome: Outcome, trigger: Trigger) -> None:
        """A key-ring operation committed: count its rotations and revocations."""
        tenant = outcome.tenant.name
        for ev in outcome.change.events:
            if ev.event == "key.rotated":
                self._rotations.inc(tenant, trigger)
            elif ev.event == "key.revoked":
                self._revocations.inc(tenant)

    def scheduler_run(self, results: list[Outcome], exc: Exception | None) -> None:
        """The scheduler's ``on_sweep`` hook."""
        if exc is not None:
            self._runs.inc("failure")
            if isinstance(exc, StoreUnavailableError):
                self.store_error("write")
            return
        for r in results:
            self.changed(r, "scheduled")
        self._runs.inc("success")
        self._last_success = self.service.clock.now()

    def store_error(self, operation: StoreOperation) -> None:
        """A store operation failed (``StoreUnavailableError`` or the like)."""
        self._store_errors.inc(operation)

    def endpoint(self) -> ASGIApp:
        """The ASGI app for ``/metrics``."""
        return MetricsEndpoint(self.registry, token=self.token)

    def render(self) -> bytes:
        """The exposition (Prometheus text format 0.0.4); may query the store: not on a loop."""
        return generate_latest(self.registry)

    # --- collection ----------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        yield from self._tenant_gauges()
        yield _counter(
            "keyturn_tokens_signed",
            "Tokens signed by the API",
            ["tenant", "kid"],
            self._signed.snapshot(),
        )
        yield _counter(
            "keyturn_verifications",
            "Verifications done by the API's verify endpoint",
            ["tenant", "outcome", "reason"],
            self._verified.snapshot(),
        )
        # dict() of a dict runs in C under the GIL: a consistent snapshot without a lock.
        jwks: dict[tuple[str, ...], int] = {(t, "200"): n for t, n in dict(self._jwks_200).items()}
        jwks.update({(t, "304"): n for t, n in dict(self._jwks_304).items()})
        jwks.update({(NO_TENANT, st): n for (st,), n in self._jwks_other.snapshot().items()})
        yield _counter("keyturn_jwks_requests", "JWKS requests served", ["tenant", "status"], jwks)
        yield _counter(
            "keyturn_rotations",
            "Rotations done by this process (next -> current)",
            ["tenant", "trigger"],
            self._rotations.snapshot(),
        )
        yield _counter(
            "keyturn_revocations",
            "Keys revoked by this process",
            ["tenant"],
            self._revocations.snapshot(),
        )
        # Both results (and both operations) exist from the start, at 0: increase() and rate()
        # then see the first failure instead of a new series.
        yield _counter(
            "keyturn_scheduler_runs",
            "Scheduler sweeps of this process",
            ["result"],
            {("success",): 0, ("failure",): 0, **self._runs.snapshot()},
        )
        last = self._last_success
        if last is not None:
            g = GaugeMetricFamily(
                "keyturn_scheduler_last_success_timestamp_seconds",
                "Unix time of this process's last successful scheduler sweep",
            )
            g.add_metric([], last)
            yield g
        yield _counter(
            "keyturn_store_errors",
            "Store (database) operations of this process that failed",
            ["operation"],
            {("read",): 0, ("write",): 0, **self._store_errors.snapshot()},
        )

    def _tenant_gauges(self) -> Iterable[Metric]:
        try:
            rows, total = self._gauge_rows()
        except (StoreUnavailableError, SQLAlchemyError) as exc:
            # The counters must still be served: skip the gauges, say why once per scrape.
            log.warning("metrics: store unavailable, per-tenant gauges skipped: %s", exc)
            self.store_error("read")
            return []
        except Exception:
            log.exception("metrics: per-tenant gauges failed")
            return []
        now = self.service.clock.now()
        names = {
            "key_age": ("keyturn_key_age_seconds", "How long the current key has been signing"),
            "period": ("keyturn_rotation_period_seconds", "The policy's rotation period R"),
            "until": (
                "keyturn_seconds_until_rotation",
                "Time until the next scheduled rotation (negative: overdue)",
            ),
            "max_age": ("keyturn_jwks_max_age_seconds", "The policy's JWKS max-age C"),
            "skew": ("keyturn_clock_skew_seconds", "The policy's clock-skew allowance S"),
            "next_pub": (
                "keyturn_next_key_published_seconds",
                "How long the next key has been in the JWKS",
            ),
            "margin": (
                "keyturn_prepublication_margin_seconds",
                "Next key's publication time at the rotation, minus C + S (negative: unsafe)",
            ),
        }
        fam = {k: GaugeMetricFamily(n, h, labels=["tenant"]) for k, (n, h) in names.items()}
        for row in rows:
            name = row.tenant
            fam["period"].add_metric([name], row.rotation_period)
            fam["max_age"].add_metric([name], row.jwks_max_age)
            fam["skew"].add_metric([name], row.clock_skew)
            rotate_at = None
            if row.current_activated_at is not None:
                fam["key_age"].add_metric([name], now - row.current_activated_at)
                if row.auto_rotate:  # manual rotation: nothing is scheduled, nothing overdue
                    rotate_at = next_rotation_at(row.current_activated_at, row.rotation_period)
                    fam["until"].add_metric([name], rotate_at - now)
            if row.next_created_at is not None:
                fam["next_pub"].add_metric([name], now - row.next_created_at)
                if rotate_at is not None:
                    margin = prepublication_margin(
                        row.next_created_at, max(rotate_at, now), row.jwks_max_age + row.clock_skew
                    )
                    fam["margin"].add_metric([name], margin)
        omitted = GaugeMetricFamily(
            "keyturn_metrics_omitted_tenants",
            "Tenants left out of the per-tenant gauges by the cap (--metrics-tenant-gauges)",
        )
        omitted.add_metric([], max(total - len(rows), 0))
        return [*fam.values(), omitted]

    def _gauge_rows(self) -> tuple[list[RotationRow], int]:
        """Rotation timing of the first ``tenant_gauges`` tenants (soonest due first), and the
        tenant count."""
        return self.service.rotation_rows(self.tenant_gauges)


class _Collector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.collect()


def _counter(
    name: str, doc: str, labels: list[str], counts: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, n in sorted(counts.items()):
        family.add_metric(list(values), n)
    return family


_KIDS: dict[str, str] = {}  # a token's header segment -> its kid: one entry per signing key
_MAX_KIDS = 1024


def _kid_of(token: str) -> str:
    """The ``kid`` of a token keyturn signed, read from its header (no store access).

    Every token of one key has the same header segment, so the parse is remembered per
    segment: a dict look-up on the sign path instead of a base64 decode and a JSON parse.
    """
    head = token.partition(".")[0]
    kid = _KIDS.get(head)
    if kid is not None:
        return kid
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        found = header.get("kid") if isinstance(header, dict) else None
    except ValueError:
        found = None
    kid = found if isinstance(found, str) else ""
    if len(_KIDS) >= _MAX_KIDS:
        _KIDS.clear()
    _KIDS[head] = kid
    return kid


class MetricsEndpoint:
    """ASGI app answering ``GET /metrics``; with ``token``, a bearer token is required."""

    def __init__(self, registry: CollectorRegistry, *, token: str | None = None) -> None:
        self.registry = registry
        self._token = token.encode() if token is not None else None

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                # Constant-time comparison: the response time must not reveal a prefix.
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if method not in ("GET", "HEAD"):
            await _problem(
                send,
                405,
                "only GET and HEAD are allowed here",
                "method_not_allowed",
                [(b"allow", b"GET, HEAD")],
            )
            return
        if not self._authorized(scope):
            await _problem(
                send,
                401,
                "a bearer token is required for /metrics",
                "unauthorized",
                [(b"www-authenticate", b'Bearer realm="keyturn-metrics"')],
            )
            return
        # The per-tenant gauges query the store: off the event loop.
        body = await anyio.to_thread.run_sync(generate_latest, self.registry)
        headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _problem(
    send: Send, status: int, detail: str, code: str, extra: list[tuple[bytes, bytes]]
) -> None:
    body = problem_bytes(status, detail, code)
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["DEFAULT_TENANT_GAUGES", "MetricsEndpoint", "ServerMetrics"]
