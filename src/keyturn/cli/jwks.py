"""``keyturn jwks [--tenant T]`` prints a tenant's JWKS; ``keyturn jwks inspect URL`` describes
any JWKS (the same as ``keyturn inspect-jwks URL``, see ``keyturn.cli.diagnose``)."""

from __future__ import annotations

import argparse
import sys

import orjson

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.diagnose import add_net_opts, cmd_inspect_jwks
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out
from keyturn.config import Settings
from keyturn.errors import InvalidInputError


def register(sub: Subparsers, parents: Parents) -> None:
    jp = sub.add_parser(
        "jwks", parents=[parents.common, parents.tenant], help="print the tenant's JWKS"
    )
    jp.add_argument(
        "jwks_action", nargs="?", choices=["inspect"], metavar="inspect",
        help="'inspect URL': describe any JWKS (same as keyturn inspect-jwks URL)",
    )  # fmt: skip
    jp.add_argument("url", nargs="?", help="JWKS URL for inspect")
    add_net_opts(jp)
    jp.set_defaults(fn=cmd_jwks)


def cmd_jwks(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    if args.jwks_action == "inspect":
        return cmd_inspect_jwks(args, settings, out)
    if args.url:
        raise InvalidInputError("a URL is only taken by: keyturn jwks inspect URL")
    return print_tenant_jwks(args, settings, out)


def print_tenant_jwks(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    doc = svc.jwks(args.tenant)
    # JWKS is JSON either way.
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK
