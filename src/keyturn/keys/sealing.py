"""Private keys at rest: PKCS#8 sealed with AES-256-GCM under a master key.

The AAD binds each ciphertext to its tenant and kid, so a sealed blob copied onto another row
fails to open instead of silently signing for the wrong tenant. The master key's id is stored
with each blob so the master key can be rotated (re-seal) while both keys are configured.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from keyturn.errors import MasterKeyError
from keyturn.keys.algorithms import PrivateKey
from keyturn.keys.b64 import b64url_decode, b64url_encode_str

_PREFIX = "mk1:"
_NONCE = 12


@dataclass(frozen=True, repr=False)
class MasterKey:
    """A 256-bit AES key; ``id`` is derived from it so a wrong key is detected by id first."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise MasterKeyError("a master key must be 32 bytes")

    @property
    def id(self) -> str:
        return hashlib.sha256(b"keyturn-master-key-id" + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        text = text.strip()
        if text.startswith(_PREFIX):
            text = text[len(_PREFIX) :]
        # Strict decoding: the lenient decoder skips foreign characters, so a mangled key
        # (a stray quote, a space) could still decode to 32 bytes of a *different* key.
        # Standard base64 (``openssl rand -base64 32``) is accepted too, padded or not.
        text = text.rstrip("=").replace("+", "-").replace("/", "_")
        try:
            raw = b64url_decode(text)
        except ValueError:
            raise MasterKeyError("master key is not base64url") from None
        return cls(raw)

    def encode(self) -> str:
        return _PREFIX + b64url_encode_str(self.secret)

    def __repr__(self) -> str:  # never print the secret
        return f"MasterKey(id={self.id})"


class Sealer:
    """Seals with the first (active) master key; opens with whichever key sealed the blob."""

    def __init__(self, keys: list[MasterKey]) -> None:
        if not keys:
            raise MasterKeyError("no master key configured")
        self.keys = list(keys)
        self._by_id = {k.id: AESGCM(k.secret) for k in keys}

    @property
    def active_id(self) -> str:
        return self.keys[0].id

    @property
    def ids(self) -> frozenset[str]:
        """The ids of every master key this sealer can open with."""
        return frozenset(self._by_id)

    @staticmethod
    def aad(tenant: str, kid: str) -> bytes:
        return f"keyturn/v1|{tenant}|{kid}".encode()

    def seal(self, key: PrivateKey, tenant: str, kid: str) -> tuple[bytes, str]:
        """Return (nonce || ciphertext, master key id)."""
        der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        nonce = os.urandom(_NONCE)
        ct = self._by_id[self.active_id].encrypt(nonce, der, self.aad(tenant, kid))
        return nonce + ct, self.active_id

    def open(self, blob: bytes, master_key_id: str, tenant: str, kid: str) -> PrivateKey:
        aead = self._by_id.get(master_key_id)
        if aead is None:
            raise MasterKeyError(
                f"key {kid} of tenant {tenant} is sealed under master key {master_key_id}, "
                f"which is not configured (configured: {', '.join(self._by_id)})"
            )
        # A truncated blob makes AESGCM raise ValueError (nonce too short), not InvalidTag.
        if len(blob) < _NONCE + 16:
            raise MasterKeyError(f"key {kid} of tenant {tenant}: sealed blob is truncated")
        try:
            der = aead.decrypt(blob[:_NONCE], blob[_NONCE:], self.aad(tenant, kid))
        except InvalidTag:
            raise MasterKeyError(
                f"key {kid} of tenant {tenant} failed to open: wrong master key or tampered data"
            ) from None
        key = load_der_private_key(der, password=None)
        if not isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):  # pragma: no cover - only keyturn's own seal() produces authentic blobs
            raise MasterKeyError(f"key {kid} of tenant {tenant}: unexpected key type")
        return key


def load_master_keys(
    env_value: str | None, path: Path | None, create: bool = False
) -> list[MasterKey]:
    """Master keys from ``KEYTURN_MASTER_KEY`` (comma-separated, active first) or a key file.

    The file holds one key per line, active first. With ``create`` a missing file is created
    with mode 0600. A file readable by group or others is refused, as ssh refuses such keys.
    """
    if env_value:
        return [MasterKey.parse(part) for part in env_value.split(",") if part.strip()]
    if path is None:
        raise MasterKeyError("no master key: set KEYTURN_MASTER_KEY or KEYTURN_MASTER_KEY_FILE")
    if not path.exists():
        if not create:
            raise MasterKeyError(f"master key file {path} does not exist (run `keyturn init`)")
        write_master_key_file(path, [MasterKey.generate()])
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"master key file {path} has mode {mode:o}: it must be readable by its owner only "
            f"(chmod 600 {path})"
        )
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise MasterKeyError(f"master key file {path} is empty")
    return [MasterKey.parse(ln) for ln in lines]


def write_master_key_file(path: Path, keys: list[MasterKey]) -> None:
    """Write atomically with mode 0600 (created so, never widened then narrowed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # A stale temp file from a crash keeps its old (possibly wider) mode under O_CREAT, and a
    # planted symlink would redirect the write: remove it and create afresh, exclusively.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # independent of the umask in either direction
    with os.fdopen(fd, "w") as fh:
        fh.write("# keyturn master keys, active first. Keep secret; back up.\n")
        for k in keys:
            fh.write(k.encode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
