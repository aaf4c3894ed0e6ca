"""``keyturn token sign|verify``."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, read_arg
from keyturn.config import Settings
from keyturn.durations import parse_duration
from keyturn.tokens.claims import MAX_JSON_DEPTH, json_too_deep


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    tk = sub.add_parser("token", parents=[common], help="sign and verify tokens")
    tksub = tk.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    ts = tksub.add_parser(
        "sign", parents=[common, parents.tenant], help="sign claims with the current key"
    )
    ts.add_argument("--claims", default="{}", help="JSON object, @file, or - for stdin")
    ts.add_argument("--ttl", metavar="DUR", help="lifetime (default and maximum: the tenant's T)")
    tv = tksub.add_parser(
        "verify", parents=[common, parents.tenant], help="verify a token against the published keys"
    )
    tv.add_argument("token", help="the token, @file, or - for stdin")
    tv.add_argument(
        "--audience", "--aud", dest="audience", help="require this audience in the aud claim"
    )
    tk.set_defaults(fn=cmd_token)


def _parse_claims(raw: bytes) -> dict[str, Any]:
    try:
        claims = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise E.InvalidInputError(f"claims are not valid JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise E.InvalidInputError("claims must be a JSON object")
    if json_too_deep(claims):
        raise E.InvalidInputError(f"claims nested deeper than {MAX_JSON_DEPTH} levels")
    return claims


def cmd_token(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.token_cmd == "sign":  # noqa: S105 - a subcommand name, not a secret
        claims = _parse_claims(read_arg(args.claims))
        ttl = parse_duration(args.ttl) if args.ttl else None
        token, full = svc.sign(args.tenant, claims, ttl=ttl)
        # The token is the command's product: printed to stdout only, never logged.
        out.data({"token": token, "claims": full}, token)
    else:
        token = read_arg(args.token).decode("ascii", "replace").strip()
        claims, kid = svc.verify(args.tenant, token, audience=args.audience)
        out.data(
            {"valid": True, "kid": kid, "claims": claims},
            f"valid: signed by {kid}\n" + orjson.dumps(claims, option=orjson.OPT_INDENT_2).decode(),
        )
    return EXIT_OK
