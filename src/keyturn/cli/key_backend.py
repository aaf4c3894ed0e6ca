"""Command-line options choosing a tenant's key backend (``tenant create``)."""

from __future__ import annotations

import argparse

from keyturn.config import Settings
from keyturn.keys.backends import BackendKind, BackendSpec


def add_key_backend_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-backend",
        dest="key_backend",
        choices=[k.value for k in BackendKind],
        help="where private keys live: software (sealed, default) or pkcs11 (in a token; "
        "default from KEYTURN_KEY_BACKEND)",
    )
    p.add_argument(
        "--pkcs11-uri",
        dest="pkcs11_uri",
        metavar="URI",
        help="RFC 7512 token URI, e.g. 'pkcs11:token=keyturn?pin-source=file:/run/pin' "
        "(default KEYTURN_PKCS11_URI; the PIN comes from KEYTURN_PKCS11_PIN, "
        "KEYTURN_PKCS11_PIN_FILE or pin-source, never from the URI)",
    )


def key_backend_from_args(args: argparse.Namespace, settings: Settings) -> BackendSpec:
    """The flags if given, else the configured default (``KEYTURN_KEY_BACKEND``)."""
    kind = getattr(args, "key_backend", None)
    uri = getattr(args, "pkcs11_uri", None)
    if kind is None and uri is None:
        return settings.key_backend
    if kind is None:
        kind = BackendKind.PKCS11.value
    if kind == BackendKind.PKCS11.value and uri is None:
        uri = settings.key_backend.uri
    return BackendSpec(BackendKind(kind), uri)
