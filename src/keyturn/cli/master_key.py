"""``keyturn master-key rotate``: a new master key, every private key re-sealed."""

from __future__ import annotations

import argparse

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, actor
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    mk = sub.add_parser("master-key", parents=[common], help="master key operations")
    mksub = mk.add_subparsers(dest="mk_cmd", required=True, metavar="ACTION")
    mr = mksub.add_parser(
        "rotate", parents=[common], help="new master key; re-seal every private key"
    )
    mr.add_argument(
        "--reseal-only",
        action="store_true",
        help="re-seal under the first configured key without generating one",
    )
    mk.set_defaults(fn=cmd_master_key)


def cmd_master_key(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service
    from keyturn.keys.sealing import MasterKey, Sealer, write_master_key_file

    svc = open_service(settings)
    keys = settings.master_keys()
    if args.reseal_only or settings.master_key_env:
        if settings.master_key_env and not args.reseal_only:
            raise E.InvalidInputError(
                "master keys come from KEYTURN_MASTER_KEY: put the new key first in that variable "
                "(keeping the old one after it) and run `keyturn master-key rotate --reseal-only`"
            )
        sealer = Sealer(keys)
    else:
        assert settings.master_key_file is not None
        new = MasterKey.generate()
        # The file is written before the database is re-sealed: a crash in between leaves
        # blobs under the old key, which the file still holds. The reverse order could lose keys.
        write_master_key_file(settings.master_key_file, [new, *keys])
        sealer = Sealer([new, *keys])
    count = svc.reseal_all(sealer, actor=actor(args))
    out.data(
        {"active_master_key": sealer.active_id, "resealed": count},
        f"active master key {sealer.active_id}; re-sealed {count} private keys. Older master keys "
        "stay configured for replicas that have not reloaded; remove them once all have.",
    )
    return EXIT_OK
