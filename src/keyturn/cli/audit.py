"""``keyturn audit list|verify``: the audit trail and its hash chain."""

from __future__ import annotations

import argparse

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_ERROR, EXIT_OK
from keyturn.cli.output import Out, table, ts
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    ap = sub.add_parser("audit", parents=[common], help="the audit trail")
    asub = ap.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    al = asub.add_parser("list", parents=[common], help="list audit records, newest first")
    al.add_argument("--tenant", "-t")
    al.add_argument("--kid")
    al.add_argument("--event")
    al.add_argument("--limit", type=int, default=50)
    asub.add_parser("verify", parents=[common], help="check the tamper-evident hash chain")
    ap.set_defaults(fn=cmd_audit)


def cmd_audit(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.audit_cmd == "verify":
        problems = svc.verify_audit_chain()
        out.data(
            {"intact": not problems, "problems": problems},
            "audit chain intact" if not problems else "\n".join(problems),
        )
        return EXIT_OK if not problems else EXIT_ERROR
    recs = svc.audit_records(
        tenant=args.tenant, kid=args.kid, event_name=args.event, limit=args.limit
    )
    out.data(
        [r.to_dict() for r in recs],
        lambda: table(
            ["ID", "AT", "ACTOR", "TENANT", "EVENT", "KID", "REASON"],
            [[r.id, ts(r.at), r.actor, r.tenant, r.event, r.kid, r.reason] for r in recs],
        ),
    )
    return EXIT_OK
