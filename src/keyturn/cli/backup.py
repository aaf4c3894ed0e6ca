"""``keyturn backup export|import``: a tenant's ring to a file and back (disaster recovery).

The logic (format, integrity check, restore) is in ``keyturn.backup``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, actor
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    bp = sub.add_parser(
        "backup",
        parents=[parents.common],
        help="export a tenant's key ring (private keys sealed) or import one into this store",
    )
    bsub = bp.add_subparsers(dest="backup_cmd", required=True, metavar="ACTION")
    be = bsub.add_parser(
        "export",
        parents=[parents.common, parents.tenant],
        help="the whole ring, sealed under the master key it names, with an integrity check",
    )
    be.add_argument(
        "--output", "-o", metavar="FILE", help="write here (mode 0600) instead of stdout"
    )
    bi = bsub.add_parser(
        "import",
        parents=[parents.common],
        help="restore an export as a new tenant (needs the master key the export names)",
    )
    bi.add_argument("file", metavar="FILE", help="the export, or - for stdin")
    bp.set_defaults(fn=cmd_backup)


def _write_private(path: Path, data: bytes) -> None:
    # Sealed keys are useless without the master key, but the file is still a key backup.
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read(name: str) -> bytes:
    from keyturn.backup import MAX_EXPORT_BYTES

    if name == "-":
        data = sys.stdin.buffer.read(MAX_EXPORT_BYTES + 1)
    else:
        try:
            with open(name, "rb") as fh:
                data = fh.read(MAX_EXPORT_BYTES + 1)
        except OSError as exc:
            raise E.InvalidInputError(f"cannot read {name}: {exc.strerror}") from None
    if len(data) > MAX_EXPORT_BYTES:
        raise E.InvalidInputError(f"{name} is larger than {MAX_EXPORT_BYTES} bytes")
    return data


def cmd_backup(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.backup import dumps, export_ring, import_ring
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.backup_cmd == "export":
        doc = export_ring(svc, args.tenant)
        data = dumps(doc)
        if args.output:
            _write_private(Path(args.output), data)
            summary = {
                "tenant": args.tenant,
                "keys": len(doc["keys"]),
                "master_key_id": doc["master_key_id"],
                "file": args.output,
            }
            out.data(
                summary,
                f"exported {summary['keys']} keys of tenant {args.tenant} to {args.output} "
                f"(sealed under master key {doc['master_key_id']}: keep that key to restore)",
            )
        else:
            sys.stdout.buffer.write(data)
        return EXIT_OK
    res = import_ring(svc, _read(args.file), actor=actor(args))
    out.data(
        res.to_dict(),
        f"restored tenant {res.tenant}: {res.keys} keys ({res.published} published), "
        f"master key {res.master_key_id}",
    )
    return EXIT_OK
