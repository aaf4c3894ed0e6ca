"""Running the HTTP service: the typed options of ``keyturn serve``, the app built from them, and
uvicorn (one process, or ``workers`` processes that each build their own app).

The command line (``keyturn.cli.serve``) parses flags into ``ServeOptions`` and calls ``run``;
nothing here imports the command line. Worker processes receive the options as explicit JSON in
``KEYTURN_SERVE_OPTIONS`` (``ServeOptions.to_json`` / ``from_json``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from keyturn import errors as E
from keyturn.config import Settings, origin

if TYPE_CHECKING:
    from keyturn.ring.records import Tenant
    from keyturn.server.app import KeyturnApp

log = logging.getLogger("keyturn.serve")

DEFAULT_METRICS_TENANT_GAUGES = 1000  # keyturn.server.metrics.DEFAULT_TENANT_GAUGES
OPTIONS_ENV = "KEYTURN_SERVE_OPTIONS"  # serve options handed to worker processes
GRACEFUL_SHUTDOWN = 10


@dataclass(frozen=True)
class ServeOptions:
    """What the app is built with. ``scheduler_interval`` ``None``: no scheduler here."""

    scheduler_interval: float | None
    poll_interval: float
    max_tenants: int
    stream_max_lifetime: float
    discovery_extra: dict[str, dict[str, Any]] | None = None
    metrics: bool = True
    metrics_token: str | None = None
    metrics_tenant_gauges: int = DEFAULT_METRICS_TENANT_GAUGES

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "scheduler_interval": self.scheduler_interval,
                "poll_interval": self.poll_interval,
                "max_tenants": self.max_tenants,
                "stream_max_lifetime": self.stream_max_lifetime,
                "discovery_extra": self.discovery_extra,
                "metrics": self.metrics,
                "metrics_token": self.metrics_token,
                "metrics_tenant_gauges": self.metrics_tenant_gauges,
            }
        ).decode()

    @classmethod
    def from_json(cls, raw: str) -> ServeOptions:
        d = orjson.loads(raw)
        if not isinstance(d, dict):
            raise E.ConfigError(f"{OPTIONS_ENV} must be a JSON object")
        sched = d["scheduler_interval"]
        return cls(
            scheduler_interval=None if sched is None else float(sched),
            poll_interval=float(d["poll_interval"]),
            max_tenants=int(d["max_tenants"]),
            stream_max_lifetime=float(d["stream_max_lifetime"]),
            discovery_extra=d["discovery_extra"],
            metrics=bool(d["metrics"]),
            metrics_token=d["metrics_token"],
            metrics_tenant_gauges=int(d["metrics_tenant_gauges"]),
        )


@dataclass(frozen=True)
class Listen:
    """Where and how uvicorn serves: address, processes, logging."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    header_timeout: float = 10.0  # keyturn.server.slowheaders.DEFAULT_HEADER_TIMEOUT


def build_app(settings: Settings, options: ServeOptions) -> KeyturnApp:
    from keyturn.bootstrap import open_service
    from keyturn.server.app import create_app

    service = open_service(settings)
    if options.scheduler_interval is not None and options.scheduler_interval <= 0:
        raise E.InvalidInputError("--scheduler-interval must be positive")
    metrics = None
    if options.metrics:
        from keyturn.server.metrics import ServerMetrics

        metrics = ServerMetrics(
            service, tenant_gauges=options.metrics_tenant_gauges, token=options.metrics_token
        )
    return create_app(
        settings,
        service,
        scheduler_interval=options.scheduler_interval,
        poll_interval=options.poll_interval,
        max_tenants=options.max_tenants,
        stream_max_lifetime=options.stream_max_lifetime,
        discovery_extra=options.discovery_extra,
        metrics=metrics,
        handle_signals=True,
    )


def issuer_warnings(tenants: Iterable[Tenant], settings: Settings) -> list[str]:
    """One line per tenant whose issuer is not on this server's public origin: its tokens name
    an issuer whose documents (and jwks_uri) this server does not publish there, so verifiers
    that check ``iss`` against discovery fail."""
    here = origin(settings.public_url)
    return [
        f"tenant {t.name!r} has issuer {t.issuer} but this server publishes at "
        f"{settings.public_url}: verifiers that fetch discovery from the issuer will not find "
        "these keys (set --public-url / KEYTURN_PUBLIC_URL, or change the issuer with "
        "`keyturn tenant set-issuer`)"
        for t in tenants
        if origin(t.issuer) != here
    ]


def worker_app() -> KeyturnApp:
    """uvicorn factory for ``--workers N``: each worker process builds its own app."""
    return build_app(Settings.from_env(), ServeOptions.from_json(os.environ[OPTIONS_ENV]))


def run(settings: Settings, options: ServeOptions, listen: Listen) -> int:
    """Migrate, ensure the default tenant, then serve until stopped; the exit status."""
    import uvicorn

    from keyturn.bootstrap import ensure_default_tenant, open_service
    from keyturn.server.logs import log_config
    from keyturn.server.slowheaders import protocol

    # Like `keyturn init`: migrations and the default tenant, once, before any worker starts.
    service = open_service(settings, create=True)
    ensure_default_tenant(service, settings, actor="serve")
    for warning in issuer_warnings(service.tenants(), settings):
        log.warning("%s", warning)
    service.close()
    # Worker processes read their settings from the environment: the same public URL.
    os.environ["KEYTURN_PUBLIC_URL"] = settings.public_url
    common: dict[str, Any] = {
        "host": listen.host,
        "port": listen.port,
        "lifespan": "on",
        "log_level": listen.log_level,
        # keyturn's loggers and uvicorn's share one handler: the format, request ids, redaction.
        "log_config": log_config(listen.log_format, listen.log_level),
        "access_log": listen.access_log,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
        "server_header": False,
        # "auto" picks uvloop and httptools when installed (the fast path measured in bench/).
        "loop": "auto",
        # httptools (or h11) with a deadline on reading request headers (slowloris).
        "http": protocol(listen.header_timeout),
    }
    if listen.workers == 1:
        config = uvicorn.Config(build_app(settings, options), **common)
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal that stopped it once shut down; SIGTERM is the normal
        # way to stop a service, so after a graceful shutdown it ends with status 0, not -15.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
        server.run()
        return 0 if server.started else 1
    os.environ[OPTIONS_ENV] = options.to_json()
    uvicorn.run("keyturn.server.serve:worker_app", factory=True, workers=listen.workers, **common)
    return 0
