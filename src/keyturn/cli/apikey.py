"""``keyturn apikey create|list|revoke``: keys for the management API and the console."""

from __future__ import annotations

import argparse
import sys

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.output import Out, actor, table, ts
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    ap = sub.add_parser("apikey", parents=[parents.common], help="API keys for the management API")
    asub = ap.add_subparsers(dest="apikey_cmd", required=True, metavar="ACTION")
    ac = asub.add_parser(
        "create", parents=[parents.common], help="create a key (the token is shown once)"
    )
    ac.add_argument(
        "--role",
        required=True,
        choices=["admin", "manager", "signer", "viewer"],
        help="admin: everything; manager: one tenant's keys and policy; signer: sign and "
        "verify; viewer: read only",
    )
    ac.add_argument("--tenant", "-t", help="the tenant a manager, signer or viewer acts on")
    ac.add_argument("--description", help="what the key is for")
    al = asub.add_parser("list", parents=[parents.common], help="list keys (never their secrets)")
    al.add_argument("--all", action="store_true", help="include revoked keys")
    ar = asub.add_parser("revoke", parents=[parents.common], help="revoke a key at once")
    ar.add_argument("key_id", metavar="KEYID", help="the key id `apikey list` shows")
    ap.set_defaults(fn=cmd_apikey)


def cmd_apikey(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    keys = svc.api_keys()
    if args.apikey_cmd == "create":
        rec, token = keys.create(
            args.role, tenant=args.tenant, description=args.description, actor=actor(args)
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
                        ts(r.created_at),
                        ts(r.last_used_at),
                        ts(r.revoked_at),
                        r.description,
                    ]
                    for r in recs
                ],
            ),
        )
    else:
        rec = keys.revoke(args.key_id, actor=actor(args))
        out.data(rec.to_dict(), f"revoked API key {rec.key_id}")
    return 0
