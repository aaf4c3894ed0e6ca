"""``keyturn serve``: flags into ``ServeOptions``, then ``keyturn.server.serve.run``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.env_options import apply_env_defaults
from keyturn.cli.output import Out
from keyturn.config import Settings
from keyturn.durations import parse_duration
from keyturn.server.serve import DEFAULT_METRICS_TENANT_GAUGES, Listen, ServeOptions
from keyturn.tokens.claims import MAX_JSON_DEPTH, json_too_deep

DEFAULT_SCHEDULER_INTERVAL = "30s"
METRICS_TOKEN_ENV = "KEYTURN_METRICS_TOKEN"  # noqa: S105 (a variable name, not a secret)


def register(sub: Subparsers, parents: Parents) -> None:
    sp = sub.add_parser(
        "serve",
        parents=[parents.common],
        help="run the HTTP service (JWKS, discovery, revocation feed, management API)",
    )
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    sp.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL clients reach this server at, in issuers and jwks_uri (default: "
        "KEYTURN_PUBLIC_URL, else http://HOST:PORT of this server)",
    )
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
        help="the least severe level logged (default info)",
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
        "--header-timeout",
        default="10s",
        metavar="DUR",
        help="close a connection whose request headers are not complete within DUR "
        "(slow-header clients; default 10s)",
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


def _options(args: argparse.Namespace) -> ServeOptions:
    """The serve flags, checked, as the server's typed options."""
    extra = None
    if args.oidc_metadata:
        try:
            extra = json.loads(Path(args.oidc_metadata).read_text())
        except (OSError, ValueError) as exc:
            raise E.InvalidInputError(f"cannot read {args.oidc_metadata}: {exc}") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise E.InvalidInputError('--oidc-metadata must be {"*"|tenant: {field: value}}')
        if json_too_deep(extra):
            raise E.InvalidInputError(f"--oidc-metadata nests deeper than {MAX_JSON_DEPTH} levels")
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
    return ServeOptions(
        scheduler_interval=None if args.no_scheduler else parse_duration(args.scheduler_interval),
        poll_interval=parse_duration(args.poll_interval),
        max_tenants=args.max_tenants,
        stream_max_lifetime=stream_max_lifetime,
        discovery_extra=extra,
        metrics=not args.no_metrics,
        metrics_token=token,
        metrics_tenant_gauges=args.metrics_tenant_gauges,
    )


def _header_timeout(value: str) -> float:
    seconds = parse_duration(value)
    if not 0 < seconds <= 300:
        raise E.InvalidInputError("--header-timeout must be positive and at most 5m")
    return seconds


def cmd_serve(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.server.serve import run

    options = _options(args)
    if args.public_url:
        settings = settings.with_public_url(args.public_url)
    else:
        if not settings.public_url_explicit and args.host in ("0.0.0.0", "::"):  # noqa: S104
            out.warn(
                f"serving on all interfaces without --public-url: issuers and jwks_uri name "
                f"http://127.0.0.1:{args.port}, which other machines cannot reach"
            )
        settings = settings.serving_at(args.host, args.port)
    listen = Listen(
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        access_log=args.access_log,
        header_timeout=_header_timeout(args.header_timeout),
    )
    return run(settings, options, listen)
