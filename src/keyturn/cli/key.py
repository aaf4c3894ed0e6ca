"""``keyturn key list|show|rotate|revoke|rotate-and-revoke|import``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, print_outcome, read_arg, table, text_value, ts
from keyturn.cli.output import actor as actor_of
from keyturn.config import Settings
from keyturn.ring.model import KeyState


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    kp = sub.add_parser("key", parents=[common], help="list, rotate, revoke and import keys")
    ksub = kp.add_subparsers(dest="key_cmd", required=True, metavar="ACTION")
    kl = ksub.add_parser("list", parents=[common, parents.tenant], help="list published keys")
    kl.add_argument("--all", action="store_true", help="include retired and revoked keys")
    ks = ksub.add_parser(
        "show", parents=[common, parents.tenant], help="show one key (public data only)"
    )
    ks.add_argument("kid", help="the key id (kid)")
    kr = ksub.add_parser("rotate", parents=[common, parents.tenant], help="rotate now: next signs")
    kr.add_argument("--reason", help="why, for the audit log")
    kr.add_argument(
        "--if-current",
        dest="if_current",
        metavar="KID",
        help="only rotate if KID is still the current key (compare-and-swap)",
    )
    kv = ksub.add_parser(
        "revoke",
        parents=[common, parents.tenant],
        help="revoke a key (removed from the JWKS at once)",
    )
    kv.add_argument("kid", nargs="?", help="the key id to revoke")
    kv.add_argument(
        "--all", action="store_true", help="leaked key store: revoke every published key"
    )
    kv.add_argument("--reason", required=True, help="why, for the audit log and the feed")
    krr = ksub.add_parser(
        "rotate-and-revoke",
        parents=[common, parents.tenant],
        help="compromised current key: revoke it, next signs at once",
    )
    krr.add_argument("--reason", required=True, help="why, for the audit log and the feed")
    ki = ksub.add_parser(
        "import", parents=[common, parents.tenant], help="import a private key (PEM, PKCS#12, JWK)"
    )
    ki.add_argument("file", help="key file, or - for stdin")
    ki.add_argument("--format", choices=["pem", "pkcs12", "jwk"], help="default: detected")
    ki.add_argument(
        "--password-env", metavar="VAR", help="read the passphrase from this environment variable"
    )
    ki.add_argument("--password-file", metavar="FILE", help="read the passphrase from this file")
    ki.add_argument(
        "--as",
        dest="as_state",
        choices=["next", "current", "previous"],
        default="next",
        help="next (default: pre-published, signs at the next rotation), current (signs now), "
        "previous (an old key whose tokens must keep verifying)",
    )
    ki.add_argument(
        "--replace-next",
        action="store_true",
        help="with --as next: retire the existing next key and destroy its private key "
        "(refused without this flag when the tenant has a next key)",
    )
    kp.set_defaults(fn=cmd_key)


def _key_rows(keys: Sequence[Any]) -> list[list[Any]]:
    return [
        [
            k.kid,
            k.alg,
            k.state,
            k.origin,
            ts(k.created_at),
            ts(k.activated_at),
            ts(k.retire_after),
            ts(k.revoked_at),
        ]
        for k in keys
    ]


def cmd_key(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    actor = actor_of(args)
    name = args.tenant
    if args.key_cmd == "list":
        _, ring = svc.ring(name)
        keys = ring.keys if args.all else [k for k in ring.keys if k.published]
        keys = sorted(keys, key=lambda k: k.created_at, reverse=True)
        out.data(
            [k.public_view() for k in keys],
            lambda: table(
                [
                    "KID",
                    "ALG",
                    "STATE",
                    "ORIGIN",
                    "CREATED",
                    "ACTIVATED",
                    "RETIRE AFTER",
                    "REVOKED",
                ],
                _key_rows(keys),
            ),
        )
    elif args.key_cmd == "show":
        k = svc.find_key(name, args.kid)
        view = k.public_view()
        out.data(view, key_text(view))
    elif args.key_cmd == "rotate":
        res = svc.rotate(name, actor=actor, reason=args.reason, if_current=args.if_current)
        ev = res.change.events[-1]
        print_outcome(
            out,
            res,
            f"rotated {name}: {ev.kid} now signs; {ev.details.get('previous')} is previous "
            f"until {ts(ev.details.get('retire_after'))}; new next {ev.details.get('next')}",
        )
    elif args.key_cmd == "revoke":
        if args.all:
            if args.kid:
                raise E.InvalidInputError("give a kid or --all, not both")
            res = svc.revoke_all(name, reason=args.reason, actor=actor)
            revoked = [e.kid for e in res.change.events if e.event == "key.revoked"]
            print_outcome(
                out,
                res,
                f"revoked {len(revoked)} keys of {name}: {', '.join(str(k) for k in revoked)}\n"
                f"new current {res.change.events[-1].kid}",
            )
        else:
            if not args.kid:
                raise E.InvalidInputError("give the kid to revoke, or --all for a leaked key store")
            res = svc.revoke(name, args.kid, reason=args.reason, actor=actor)
            print_outcome(out, res, f"revoked {args.kid} of {name}")
    elif args.key_cmd == "rotate-and-revoke":
        res = svc.rotate_and_revoke(name, reason=args.reason, actor=actor)
        ev = res.change.events[-1]
        print_outcome(
            out,
            res,
            f"revoked {ev.kid}; {ev.details.get('promoted')} now signs; new next "
            f"{ev.details.get('next')}",
        )
    elif args.key_cmd == "import":
        data = read_arg("@" + args.file if args.file != "-" else "-")
        password = _password(args)
        res = svc.import_key(
            name,
            data,
            actor=actor,
            fmt=args.format,
            password=password,
            as_state=KeyState(args.as_state),
            replace_next=args.replace_next,
        )
        kid = res.change.events[-1].kid
        print_outcome(out, res, f"imported {kid} into {name} as {args.as_state}")
    return EXIT_OK


TIME_FIELDS = frozenset(
    {"created_at", "activated_at", "deactivated_at", "retire_after", "retired_at", "revoked_at"}
)


def key_text(view: dict[str, Any]) -> str:
    """``key show`` for people: UTC times, ``-`` for none, the public JWK on one line."""
    lines = []
    for key, val in view.items():
        if key == "public_jwk":
            continue
        shown = ts(val) if key in TIME_FIELDS else text_value(val)
        lines.append(f"{key:18} {shown}")
    lines.append(f"{'public_jwk':18} {orjson.dumps(view['public_jwk']).decode()}")
    return "\n".join(lines)


def _password(args: argparse.Namespace) -> bytes | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise E.InvalidInputError(f"environment variable {args.password_env} is not set")
        return value.encode()
    if args.password_file:
        try:
            return Path(args.password_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise E.InvalidInputError(f"cannot read {args.password_file}: {exc.strerror}") from None
    return None
