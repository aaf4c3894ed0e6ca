"""``keyturn serve`` and ``keyturn apikey``, registered into the main CLI by ``register``.

Kept light at import time: every ``keyturn`` command imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyturn import errors as E
from keyturn.config import Settings
from keyturn.durations import parse_duration
from keyturn.server.env_options import apply_env_defaults

if TYPE_CHECKING:
    from keyturn.cli import Out
    from keyturn.server.app import KeyturnApp

DEFAULT_SCHEDULER_INTERVAL = "30s"
DEFAULT_METRICS_TENANT_GAUGES = 1000  # keyturn.server.metrics.DEFAULT_TENANT_GAUGES
METRICS_TOKEN_ENV = "KEYTURN_METRICS_TOKEN"  # noqa: S105 (a variable name, not a secret)
OPTIONS_ENV = "KEYTURN_SERVE_OPTIONS"  # serve options handed to worker processes
GRACEFUL_SHUTDOWN = 10


def register(
    sub: Any, common: argparse.ArgumentParser, tenant_opt: argparse.ArgumentParser
) -> None:
    sp = sub.add_parser(
        "serve",
        parents=[common],
        help="run the HTTP service (JWKS, discovery, revocation feed, management API)",
    )
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    sp.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    sched = sp.add_mutually_exclusive_group()
    sched.add_argument(
        "--scheduler-interval",
        default=DEFAULT_SCHEDULER_INTERVAL,
        metavar="DUR",
        help="how often the rotation scheduler sweeps (default 30s)",
    )
    sched.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not rotate in this process (e.g. a cron job runs `keyturn rotate-due`)",
    )
    sp.add_argument(
        "--poll-interval",
        default="0.5s",
        metavar="DUR",
        help="how often to look for key changes made by other processes (default 0.5s)",
    )
    sp.add_argument(
        "--max-tenants",
        type=int,
        default=10_000,
        help="tenants whose documents are kept in memory (LRU; default 10000)",
    )
    sp.add_argument(
        "--stream-max-lifetime",
        default="1h",
        metavar="DUR",
        help="end each revocation stream after about this long with a reconnect event, so "
        "streams re-spread over replicas (default 1h)",
    )
    sp.add_argument(
        "--oidc-metadata",
        metavar="FILE",
        help='JSON {"*"|tenant: {field: value}} added to discovery documents, e.g. the '
        "token_endpoint of the authorization server that signs through keyturn",
    )
    sp.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
    )
    sp.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (time, level, logger, message, request_id)",
    )
    sp.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="uvicorn's line per request, at --log-level info, with request ids in JSON mode "
        "(default off: a line per JWKS request halves the hot path's throughput)",
    )
    sp.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not serve Prometheus metrics at /metrics",
    )
    sp.add_argument(
        "--metrics-token",
        metavar="TOKEN",
        help=f"require Authorization: Bearer TOKEN on /metrics (or set {METRICS_TOKEN_ENV}, "
        "which other users cannot read in the process list)",
    )
    sp.add_argument(
        "--metrics-tenant-gauges",
        type=int,
        default=DEFAULT_METRICS_TENANT_GAUGES,
        metavar="N",
        help="export per-tenant gauges for at most N tenants, soonest rotation first "
        f"(default {DEFAULT_METRICS_TENANT_GAUGES}; 0: none)",
    )
    sp.set_defaults(fn=cmd_serve)
    apply_env_defaults(sp, os.environ)  # KEYTURN_<OPTION>: containers configure by env

    ap = sub.add_parser("apikey", parents=[common], help="API keys for the management API")
    asub = ap.add_subparsers(dest="apikey_cmd", required=True, metavar="ACTION")
    ac = asub.add_parser("create", parents=[common], help="create a key (the token is shown once)")
    ac.add_argument("--role", required=True, choices=["admin", "manager", "signer", "viewer"])
    ac.add_argument("--tenant", "-t", help="the tenant a manager, signer or viewer acts on")
    ac.add_argument("--description", help="what the key is for")
    al = asub.add_parser("list", parents=[common], help="list keys (never their secrets)")
    al.add_argument("--all", action="store_true", help="include revoked keys")
    ar = asub.add_parser("revoke", parents=[common], help="revoke a key at once")
    ar.add_argument("key_id", metavar="KEYID")
    ap.set_defaults(fn=cmd_apikey)


# --- serve ---------------------------------------------------------------------------------
def _options(args: argparse.Namespace) -> dict[str, Any]:
    extra = None
    if args.oidc_metadata:
        try:
            extra = json.loads(Path(args.oidc_metadata).read_text())
        except (OSError, ValueError) as exc:
            raise E.InvalidInputError(f"cannot read {args.oidc_metadata}: {exc}") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise E.InvalidInputError('--oidc-metadata must be {"*"|tenant: {field: value}}')
    if args.workers < 1:
        raise E.InvalidInputError("--workers must be at least 1")
    if args.max_tenants < 1:
        raise E.InvalidInputError("--max-tenants must be at least 1")
    if args.metrics_tenant_gauges < 0:
        raise E.InvalidInputError("--metrics-tenant-gauges must be 0 or more")
    token = args.metrics_token or os.environ.get(METRICS_TOKEN_ENV) or None
    stream_max_lifetime = parse_duration(args.stream_max_lifetime)
    if not stream_max_lifetime > 0:
        raise E.InvalidInputError("--stream-max-lifetime must be positive")
    return {
        "scheduler_interval": None
        if args.no_scheduler
        else parse_duration(args.scheduler_interval),
        "poll_interval": parse_duration(args.poll_interval),
        "max_tenants": args.max_tenants,
        "stream_max_lifetime": stream_max_lifetime,
        "discovery_extra": extra,
        "metrics": not args.no_metrics,
        "metrics_token": token,
        "metrics_tenant_gauges": args.metrics_tenant_gauges,
    }


def build_app(settings: Settings, options: dict[str, Any]) -> KeyturnApp:
    from keyturn.bootstrap import open_service
    from keyturn.server.app import create_app

    service = open_service(settings)
    if options["scheduler_interval"] is not None and options["scheduler_interval"] <= 0:
        raise E.InvalidInputError("--scheduler-interval must be positive")
    metrics = None
    if options.get("metrics", True):
        from keyturn.server.metrics import ServerMetrics

        metrics = ServerMetrics(
            service,
            tenant_gauges=options.get("metrics_tenant_gauges", DEFAULT_METRICS_TENANT_GAUGES),
            token=options.get("metrics_token"),
        )
    return create_app(
        settings,
        service,
        scheduler_interval=options["scheduler_interval"],
        poll_interval=options["poll_interval"],
        max_tenants=options["max_tenants"],
        stream_max_lifetime=options["stream_max_lifetime"],
        discovery_extra=options["discovery_extra"],
        metrics=metrics,
        handle_signals=True,
    )


def worker_app() -> KeyturnApp:
    """uvicorn factory for ``--workers N``: each worker process builds its own app."""
    return build_app(Settings.from_env(), json.loads(os.environ[OPTIONS_ENV]))


def cmd_serve(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    import uvicorn

    from keyturn.bootstrap import ensure_default_tenant, open_service
    from keyturn.server.logs import log_config

    options = _options(args)
    # Like `keyturn init`: migrations and the default tenant, once, before any worker starts.
    service = open_service(settings, create=True)
    ensure_default_tenant(service, settings, actor="serve")
    service.store.dispose()
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "lifespan": "on",
        "log_level": args.log_level,
        # keyturn's loggers and uvicorn's share one handler: the format, request ids, redaction.
        "log_config": log_config(args.log_format, args.log_level),
        "access_log": args.access_log,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
        "server_header": False,
        # "auto" picks uvloop and httptools when installed (the fast path measured in bench/).
        "loop": "auto",
        "http": "auto",
    }
    if args.workers == 1:
        config = uvicorn.Config(build_app(settings, options), **common)
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal that stopped it once shut down; SIGTERM is the normal
        # way to stop a service, so after a graceful shutdown it ends with status 0, not -15.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
        server.run()
        return 0 if server.started else 1
    os.environ[OPTIONS_ENV] = json.dumps(options)
    uvicorn.run("keyturn.server.cli:worker_app", factory=True, workers=args.workers, **common)
    return 0


# --- apikey --------------------------------------------------------------------------------
def cmd_apikey(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service
    from keyturn.cli import _actor, _ts, table
    from keyturn.store.apikeys import ApiKeyStore

    svc = open_service(settings)
    keys = ApiKeyStore(svc.store, svc.clock)
    if args.apikey_cmd == "create":
        rec, token = keys.create(
            args.role, tenant=args.tenant, description=args.description, actor=_actor(args)
        )
        scope = f"tenant {rec.tenant}" if rec.tenant else "every tenant"
        if not out.json:
            sys.stderr.write(
                f"created {rec.role.value} key {rec.key_id} for {scope}; "
                "the token below is shown once: store it now\n"
            )
        out.data({**rec.to_dict(), "token": token}, token)
    elif args.apikey_cmd == "list":
        recs = keys.list(include_revoked=args.all)
        out.data(
            [r.to_dict() for r in recs],
            lambda: table(
                ["KEY ID", "ROLE", "TENANT", "CREATED", "LAST USED", "REVOKED", "DESCRIPTION"],
                [
                    [
                        r.key_id,
                        r.role.value,
                        r.tenant,
                        _ts(r.created_at),
                        _ts(r.last_used_at),
                        _ts(r.revoked_at),
                        r.description,
                    ]
                    for r in recs
                ],
            ),
        )
    else:
        rec = keys.revoke(args.key_id, actor=_actor(args))
        out.data(rec.to_dict(), f"revoked API key {rec.key_id}")
    return 0
