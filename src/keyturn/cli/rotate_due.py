"""``keyturn rotate-due``: one scheduler sweep (for a cron job instead of ``serve``'s scheduler)."""

from __future__ import annotations

import argparse

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    rd = sub.add_parser(
        "rotate-due", parents=[common], help="one scheduler sweep: rotate and retire what is due"
    )
    rd.set_defaults(fn=cmd_rotate_due)


def cmd_rotate_due(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    results = svc.sweep(actor="scheduler")
    events = [{"tenant": r.tenant.name, **ev} for r in results for ev in r.to_dict()["events"]]
    out.data(
        {"changed": len(results), "events": events},
        "\n".join(f"{e['tenant']}: {e['event']} {e.get('kid')}" for e in events) or "nothing due",
    )
    return EXIT_OK
