"""Key backends: where private keys live (sealed software keys, PKCS#11 tokens) and how they sign."""

from keyturn.keys.backends.base import (
    SOFTWARE,
    BackendKind,
    BackendSpec,
    KeyBackend,
    KeyRef,
    NewKey,
    RawSigner,
)
from keyturn.keys.backends.registry import KeyBackends

__all__ = [
    "SOFTWARE",
    "BackendKind",
    "BackendSpec",
    "KeyBackend",
    "KeyBackends",
    "KeyRef",
    "NewKey",
    "RawSigner",
]
