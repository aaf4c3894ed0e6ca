"""``keyturn audit list|head|verify``: the audit trail, its hash chain and its anchor.

The chain shows an edited or removed record in the middle; a record deleted from the end leaves
a shorter chain that is still intact. ``audit head`` prints the trail's record count and head
hash: store them outside the database (a ticket, a log shipper, a second system) and
``audit verify --expect-count N --expect-head HASH`` later proves those N records are unchanged.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_ERROR, EXIT_OK
from keyturn.cli.output import Out, table, ts
from keyturn.config import Settings
from keyturn.ring.records import AuditAnchor

HEAD_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def parse_time(value: str) -> float:
    """An ISO 8601 time (``2026-01-31``, ``2026-01-31T12:00:00Z``; UTC unless an offset is
    given) or epoch seconds, as epoch seconds."""
    v = value.strip()
    try:
        return float(v) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", v) else _iso(v)
    except ValueError:
        raise E.InvalidInputError(
            f"not a time: {value!r} (use ISO 8601 like 2026-01-31T12:00:00Z, or epoch seconds)"
        ) from None


def _iso(v: str) -> float:
    dt = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    ap = sub.add_parser("audit", parents=[common], help="the audit trail")
    asub = ap.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    al = asub.add_parser("list", parents=[common], help="list audit records, newest first")
    al.add_argument("--tenant", "-t", help="only this tenant's records (default: all)")
    al.add_argument("--kid", help="only records about this key id")
    al.add_argument("--event", help="only this event, e.g. key.rotated")
    al.add_argument(
        "--since", metavar="TIME", help="records at or after TIME (ISO 8601 or epoch seconds)"
    )
    al.add_argument(
        "--until", metavar="TIME", help="records before TIME (ISO 8601 or epoch seconds)"
    )
    al.add_argument("--limit", type=int, default=50, help="at most this many records (default 50)")
    asub.add_parser(
        "head", parents=[common], help="the record count and head hash, to store elsewhere"
    )
    av = asub.add_parser("verify", parents=[common], help="check the tamper-evident hash chain")
    av.add_argument(
        "--expect-head",
        metavar="HASH",
        help="the head hash `audit head` printed earlier (with --expect-count)",
    )
    av.add_argument(
        "--expect-count",
        type=int,
        metavar="N",
        help="the record count `audit head` printed earlier (with --expect-head)",
    )
    ap.set_defaults(fn=cmd_audit)


def _expected(args: argparse.Namespace) -> AuditAnchor | None:
    if args.expect_head is None and args.expect_count is None:
        return None
    if args.expect_head is None or args.expect_count is None:
        raise E.InvalidInputError("give --expect-head and --expect-count together")
    head = args.expect_head.strip().lower()
    if not HEAD_PATTERN.fullmatch(head):
        raise E.InvalidInputError("--expect-head must be 64 hex digits (from `audit head`)")
    if args.expect_count < 0:
        raise E.InvalidInputError("--expect-count must be 0 or more")
    return AuditAnchor(args.expect_count, head)


def cmd_audit(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.audit_cmd == "head":
        anchor = svc.audit_anchor()
        out.data(anchor.to_dict(), f"count {anchor.count}\nhead  {anchor.head}")
        return EXIT_OK
    if args.audit_cmd == "verify":
        expect = _expected(args)
        problems = svc.verify_audit_chain()
        if expect is not None:
            problems += svc.verify_audit_anchor(expect)
        anchor = svc.audit_anchor()
        ok_text = f"audit chain intact ({anchor.count} records, head {anchor.head})"
        if expect is not None and not problems:
            ok_text += f"; the {expect.count} anchored records are unchanged"
        out.data(
            {"intact": not problems, "problems": problems, **anchor.to_dict()},
            ok_text if not problems else "\n".join(problems),
        )
        return EXIT_OK if not problems else EXIT_ERROR
    if args.limit < 1:
        raise E.InvalidInputError("--limit must be at least 1")
    recs = svc.audit_records(
        tenant=args.tenant,
        kid=args.kid,
        event_name=args.event,
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        limit=args.limit,
    )
    out.data(
        [r.to_dict() for r in recs],
        lambda: table(
            ["ID", "AT", "ACTOR", "TENANT", "EVENT", "KID", "REASON"],
            [[r.id, ts(r.at), r.actor, r.tenant, r.event, r.kid, r.reason] for r in recs],
        ),
    )
    return EXIT_OK
