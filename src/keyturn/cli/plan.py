"""``keyturn plan``: every upcoming transition and the JWKS at each."""

from __future__ import annotations

import argparse
from typing import Any

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, short_kid, table, ts
from keyturn.config import Settings
from keyturn.durations import fmt_duration, parse_duration


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    pp = sub.add_parser(
        "plan",
        parents=[common, parents.tenant],
        help="every upcoming transition and the JWKS at each",
    )
    pp.add_argument("--all", action="store_true", help="every tenant")
    pp.add_argument("--horizon", default="90d", help="how far ahead (default 90d)")
    pp.set_defaults(fn=cmd_plan)


def cmd_plan(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service
    from keyturn.ring.timeline import plan

    svc = open_service(settings)
    horizon = parse_duration(args.horizon)
    names = [t.name for t in svc.tenants()] if args.all else [args.tenant]
    now = svc.clock.now()
    result: dict[str, Any] = {}
    texts: list[str] = []
    for name in names:
        _, ring = svc.ring(name)
        steps = plan(ring, now, horizon)
        result[name] = [s.to_dict() for s in steps]
        if not ring.policy.auto_rotate:
            texts.append(
                f"tenant {name}: rotation is manual (automatic rotation is off): no rotation "
                "is scheduled; `keyturn key rotate` rotates, under the same timing rules"
            )
        texts.append(
            f"tenant {name} (now {ts(now)}; signing "
            f"{short_kid(ring.current.kid if ring.current else None)}; "
            f"JWKS {', '.join(short_kid(k.kid) + ':' + k.state for k in ring.published)})"
        )
        texts.append(
            table(
                ["AT", "IN", "EVENT", "KEYS", "SIGNING AFTER", "JWKS AFTER"],
                [
                    [
                        ts(s.at),
                        fmt_duration(s.at - now),
                        s.event,
                        ",".join(short_kid(k) for k in s.kids),
                        short_kid(s.signing),
                        " ".join(f"{short_kid(k)}:{st}" for k, st in s.jwks),
                    ]
                    for s in steps
                ],
            )
        )
    out.data(result, "\n\n".join(texts))
    return EXIT_OK
