"""``keyturn drill``: rehearse a compromise under load (parsing only; the drill is in
``keyturn.drill``)."""

from __future__ import annotations

import argparse
import os
import sys

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_DRILL_FAILED, EXIT_OK
from keyturn.cli.output import Out
from keyturn.config import Settings
from keyturn.durations import parse_duration

API_KEY_ENV = "KEYTURN_API_KEY"


def register(sub: Subparsers, parents: Parents) -> None:
    from keyturn.drill.probes import DEFAULT_KINDS, KINDS
    from keyturn.drill.run import ACTIONS

    d = sub.add_parser(
        "drill",
        parents=[parents.common, parents.tenant],
        help="rehearse a key compromise against a running deployment, under load",
        description="Sign continuously, verify with several verifiers, perform ACTION under load "
        "and report per verifier the valid tokens rejected and how soon the old key was refused. "
        "revoke actions really revoke: every client then needs a new token (that is the drill).",
        epilog=f"exit codes: 0 drill passed, {EXIT_DRILL_FAILED} drill failed (a keyturn verifier "
        "rejected a valid token, was late to refuse the revoked key, or a sign failed); "
        "the usual codes when it cannot run.",
    )
    d.add_argument(
        "--action",
        choices=ACTIONS,
        default="rotate-and-revoke",
        help="the compromise response to rehearse (default rotate-and-revoke)",
    )
    d.add_argument("--url", help="the keyturn server's base URL (default: KEYTURN_PUBLIC_URL)")
    d.add_argument("--api-key", help=f"a manager API key for the tenant (default: ${API_KEY_ENV})")
    d.add_argument(
        "--verifiers",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated, from: {', '.join(KINDS)} (default: %(default)s; pyjwt only "
        "if installed; no-feed is keyturn with revocations=None, unsafe on purpose)",
    )
    d.add_argument("--warmup", default="2s", help="load before the action (default 2s)")
    d.add_argument("--window", default="20s", help="longest watch after it (default 20s)")
    d.add_argument(
        "--settle", default="3s", help="watch this long once all refuse the old key (3s)"
    )
    d.add_argument("--poll-interval", default="10s", help="the poll verifier's interval")
    d.add_argument("--reason", default="keyturn drill", help="the revocation reason (audited)")
    d.add_argument("--yes", action="store_true", help="confirm a revoke action on this deployment")
    d.set_defaults(fn=cmd_drill)


def cmd_drill(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.drill.report import render_report
    from keyturn.drill.run import DrillConfig, run_drill
    from keyturn.errors import InvalidInputError

    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        raise InvalidInputError(f"give --api-key or set {API_KEY_ENV}")
    if args.action != "rotate" and not args.yes:
        raise InvalidInputError(
            f"{args.action} revokes keys of tenant {args.tenant} for real: add --yes"
        )
    cfg = DrillConfig(
        url=args.url or settings.public_url,
        api_key=api_key,
        tenant=args.tenant,
        action=args.action,
        verifiers=tuple(v.strip() for v in args.verifiers.split(",") if v.strip()),
        warmup=parse_duration(args.warmup),
        window=parse_duration(args.window),
        settle=parse_duration(args.settle),
        poll_interval=parse_duration(args.poll_interval),
        reason=args.reason,
    )

    def progress(msg: str) -> None:
        if not args.json:
            sys.stderr.write(msg + "\n")

    report = run_drill(cfg, progress=progress)
    out.data(report.to_dict(), lambda: render_report(report))
    return EXIT_OK if report.passed else EXIT_DRILL_FAILED
