"""Sealing private keys at rest: AES-256-GCM under a master key, bound to tenant and kid."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keyturn.errors import MasterKeyError
from keyturn.keys.algorithms import Alg
from keyturn.keys.jwk import thumbprint
from keyturn.keys.sealing import MasterKey, Sealer, load_master_keys, write_master_key_file
from tests.keys.material import ALL_ALGS, private_key


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.value) for a in ALL_ALGS])
def test_seal_open_round_trip(alg: Alg) -> None:
    key = private_key(alg)
    sealer = Sealer([MasterKey.generate()])
    blob, mk_id = sealer.seal(key, "acme", "kid-1")
    assert mk_id == sealer.active_id
    assert thumbprint(sealer.open(blob, mk_id, "acme", "kid-1")) == thumbprint(key)


def test_each_seal_uses_a_fresh_nonce() -> None:
    sealer = Sealer([MasterKey.generate()])
    key = private_key(Alg.ES256)
    assert sealer.seal(key, "t", "k")[0] != sealer.seal(key, "t", "k")[0]


@pytest.mark.parametrize(
    ("tenant", "kid"),
    [
        pytest.param("other", "kid-1", id="other-tenant"),
        pytest.param("acme", "kid-2", id="other-kid"),
        pytest.param("acme|kid-1", "", id="separator-shift"),
    ],
)
def test_aad_binds_tenant_and_kid(tenant: str, kid: str) -> None:
    sealer = Sealer([MasterKey.generate()])
    blob, mk_id = sealer.seal(private_key(Alg.ES256), "acme", "kid-1")
    with pytest.raises(MasterKeyError, match="failed to open"):
        sealer.open(blob, mk_id, tenant, kid)


def test_wrong_master_key_is_an_error_not_garbage() -> None:
    sealer = Sealer([MasterKey.generate()])
    blob, _ = sealer.seal(private_key(Alg.ES256), "acme", "k")
    other = MasterKey.generate()
    # Even when told the blob belongs to the other key's id, decryption fails loudly.
    with pytest.raises(MasterKeyError, match="wrong master key"):
        Sealer([other]).open(blob, other.id, "acme", "k")


def test_unknown_master_key_id() -> None:
    sealer = Sealer([MasterKey.generate()])
    blob, mk_id = sealer.seal(private_key(Alg.ES256), "acme", "k")
    with pytest.raises(MasterKeyError, match="not configured"):
        Sealer([MasterKey.generate()]).open(blob, mk_id, "acme", "k")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-tag-bit"),
        pytest.param(lambda b: b[:20], id="truncated"),
        pytest.param(lambda b: b[:5], id="shorter-than-nonce"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_tampered_blob(mangle: object) -> None:
    sealer = Sealer([MasterKey.generate()])
    blob, mk_id = sealer.seal(private_key(Alg.EdDSA), "acme", "k")
    with pytest.raises(MasterKeyError):
        sealer.open(mangle(blob), mk_id, "acme", "k")  # type: ignore[operator]


def test_multiple_master_keys_active_first() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    key = private_key(Alg.ES256)
    old_blob, old_id = Sealer([old]).seal(key, "acme", "k")
    sealer = Sealer(load_master_keys(f"{new.encode()}, {old.encode()}", None))
    assert [k.id for k in sealer.keys] == [new.id, old.id]
    assert sealer.active_id == new.id
    # Blobs sealed under the old key still open during a master-key rotation...
    assert thumbprint(sealer.open(old_blob, old_id, "acme", "k")) == thumbprint(key)
    # ...and new seals use the active (first) key.
    assert sealer.seal(key, "acme", "k")[1] == new.id


def test_no_master_key() -> None:
    with pytest.raises(MasterKeyError):
        Sealer([])
    with pytest.raises(MasterKeyError):
        load_master_keys(None, None)


def test_master_key_encode_parse_round_trip() -> None:
    mk = MasterKey.generate()
    assert MasterKey.parse(mk.encode()) == mk
    assert MasterKey.parse("  " + mk.encode() + "\n") == mk
    assert MasterKey.parse(mk.encode().removeprefix("mk1:")) == mk


def test_master_key_accepts_standard_base64() -> None:
    import base64

    secret = bytes(range(250, 256)) * 5 + b"\xfb\xff"
    assert MasterKey.parse(base64.b64encode(secret).decode()).secret == secret


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("mk1:" + "A" * 42 + "!A", id="foreign-character"),
        pytest.param("mk1:" + "A" * 21 + " " + "A" * 22, id="inner-space"),
        pytest.param("mk1:AAAA", id="too-short"),
        pytest.param("mk1:" + "A" * 60, id="too-long"),
        pytest.param("mk1:" + "A" * 42 + "B", id="non-canonical"),
    ],
)
def test_master_key_parse_refuses(text: str) -> None:
    with pytest.raises(MasterKeyError):
        MasterKey.parse(text)


def test_master_key_repr_never_shows_the_secret() -> None:
    mk = MasterKey.generate()
    for text in (repr(mk), str(mk), f"{mk}", repr([mk]), repr(Sealer([mk]).keys)):
        assert mk.encode() not in text
        assert mk.encode().removeprefix("mk1:") not in text
        assert mk.secret.hex() not in text
        assert repr(mk.secret) not in text
    assert mk.id in repr(mk)


def test_master_key_file_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.key"
    old_umask = os.umask(0)  # the most permissive umask must not widen the file
    try:
        keys = load_master_keys(None, path, create=True)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_keys(None, path) == keys
    assert not path.with_name("master.key.tmp").exists()


def test_master_key_file_not_widened_by_a_stale_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    stale = tmp_path / "master.key.tmp"
    stale.write_text("leftover")
    stale.chmod(0o644)
    write_master_key_file(path, [MasterKey.generate()])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_master_key_file_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    keys = [MasterKey.generate(), MasterKey.generate()]
    write_master_key_file(path, keys)
    assert load_master_keys(None, path) == keys


@pytest.mark.parametrize(
    "mode",
    [pytest.param(0o640, id="group-readable"), pytest.param(0o604, id="world-readable")],
)
def test_master_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    write_master_key_file(path, [MasterKey.generate()])
    path.chmod(mode)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_keys(None, path)


def test_master_key_file_missing_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_master_keys(None, path)
    path.touch(mode=0o600)
    path.write_text("# only a comment\n\n")
    with pytest.raises(MasterKeyError, match="empty"):
        load_master_keys(None, path)
