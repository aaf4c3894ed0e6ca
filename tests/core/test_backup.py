"""Disaster recovery: a tenant's ring exported and imported into a fresh store.

The restore publishes the identical JWKS, signs with the same current key, keeps private keys
sealed in the file, needs the master key the export names, and refuses any tampering.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from keyturn import errors as E
from keyturn.backup import FORMAT, MAX_EXPORT_BYTES, dumps, export_ring, import_ring
from keyturn.cli import main
from keyturn.clock import FakeClock
from keyturn.keys.sealing import MasterKey, Sealer
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.store.sql import SqlStore

ISSUER = "https://id.example.com/t/payments"
# A ring with every state: rotated three times, one previous revoked, one retired.
POLICY = Policy(
    alg="ES256",  # type: ignore[arg-type]
    rotation_period=3600,
    token_ttl=600,
    jwks_max_age=300,
    clock_skew=30,
)


@pytest.fixture
def source(service: KeyService, clock: FakeClock) -> KeyService:
    service.create_tenant("payments", issuer=ISSUER, policy=POLICY, actor="test")
    clock.advance(3600)
    service.rotate("payments", actor="test")
    clock.advance(3600)
    service.rotate("payments", actor="test")
    _, ring = service.ring("payments")
    oldest_previous = sorted(
        (k for k in ring.keys if k.state.value == "previous"), key=lambda k: k.created_at
    )[0]
    service.revoke("payments", oldest_previous.kid, reason="drill", actor="test")
    clock.advance(3600)
    service.rotate("payments", actor="test")
    clock.advance(600)  # retention is max(2T, T + C + S) = 1200 s: the newest previous stays
    service.retire_due("payments", actor="test")
    return service


@pytest.fixture
def fresh(tmp_path: Path, sealer: Sealer, clock: FakeClock) -> Iterator[Callable[..., KeyService]]:
    """A fresh store (SQLite in its own home) with the given master keys, as after a disaster."""
    made: list[SqlStore] = []

    def make(keys: list[MasterKey] | None = None) -> KeyService:
        store = SqlStore(f"sqlite:///{tmp_path / f'restore{len(made)}.db'}")
        store.migrate()
        made.append(store)
        return KeyService(store, Sealer(keys or sealer.keys), clock)

    yield make
    for s in made:
        s.dispose()


def test_restore_publishes_the_identical_jwks_and_signs_with_the_same_key(
    source: KeyService, fresh: Callable[..., KeyService]
) -> None:
    states = sorted(k.state.value for k in source.ring("payments")[1].keys)
    assert states == ["current", "next", "previous", "retired", "revoked"]
    data = dumps(export_ring(source, "payments"))

    target = fresh()
    res = import_ring(target, data, actor="restore")
    assert res.to_dict() == {
        "tenant": "payments",
        "keys": 5,
        "published": 3,
        "master_key_id": source.sealer.active_id,
    }
    assert orjson.dumps(target.jwks("payments")) == orjson.dumps(source.jwks("payments"))
    restored, before = target.tenant("payments"), source.tenant("payments")
    assert (restored.issuer, restored.policy) == (before.issuer, before.policy)

    # Same timeline: every record with its state and transition times.
    def records(svc: KeyService) -> list[dict[str, Any]]:
        return sorted((k.public_view() for k in svc.ring("payments")[1].keys), key=str)

    assert records(target) == records(source)
    # The restored store signs with the same current key; the source's JWKS verifies it.
    token, _ = target.sign("payments", {"sub": "alice", "aud": "api"})
    claims, kid = source.verify("payments", token, audience="api")
    assert claims["sub"] == "alice"
    assert kid == source.ring("payments")[1].current.kid  # type: ignore[union-attr]
    # And the other way round: a token from before the disaster verifies after it.
    old, _ = source.sign("payments", {"sub": "bob", "aud": "api"})
    assert target.verify("payments", old, audience="api")[0]["sub"] == "bob"
    # The import is audited; the restored audit chain is intact.
    (rec,) = target.store.audit_records(tenant="payments")
    assert (rec.event, rec.actor, rec.details["keys"]) == ("tenant.imported", "restore", 5)
    assert target.store.verify_audit_chain() == []


def test_the_export_names_its_master_key_and_keeps_private_keys_sealed(
    source: KeyService,
) -> None:
    doc = export_ring(source, "payments")
    assert doc["format"] == FORMAT
    assert doc["master_key_id"] == source.sealer.active_id
    assert doc["sealed_under"] == [source.sealer.active_id]
    _, stored = source.store.tenant_keys("payments")
    blobs = {k.kid: k.sealed_private for k in stored}
    for k in doc["keys"]:
        # Exactly the stored ciphertext (or nothing, for retired and revoked keys).
        blob = k["sealed_private"]
        want = blobs[k["kid"]]
        assert (None if blob is None else base64.urlsafe_b64decode(blob + "==")) == want
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(k["public_jwk"])
    # No private key in the clear anywhere in the file: not as DER, not as a JWK member.
    text = dumps(doc)
    for k in stored:
        if k.sealed_private is None:
            continue
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        private = source.sealer.open(k.sealed_private, k.master_key_id or "", "payments", k.kid)
        der = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        assert base64.b64encode(der) not in text
        assert base64.urlsafe_b64encode(der).rstrip(b"=") not in text
        d = private.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        assert base64.urlsafe_b64encode(d).rstrip(b"=") not in text


def _key(doc: dict[str, Any], state: str) -> dict[str, Any]:
    k: dict[str, Any] = next(k for k in doc["keys"] if k["state"] == state)
    return k


def _swap_blobs(doc: dict[str, Any]) -> None:
    cur, nxt = _key(doc, "current"), _key(doc, "next")
    cur["sealed_private"], nxt["sealed_private"] = nxt["sealed_private"], cur["sealed_private"]


TAMPERING = [
    pytest.param(lambda d: _key(d, "revoked").update(state="previous"), id="unrevoke-a-key"),
    pytest.param(lambda d: _key(d, "previous").update(retire_after=4e9), id="extend-retention"),
    pytest.param(lambda d: d["tenant"].update(issuer="https://evil.example"), id="issuer"),
    pytest.param(lambda d: d["tenant"]["policy"].update(token_ttl=86400), id="policy"),
    pytest.param(lambda d: d["tenant"].update(name="other"), id="rename-tenant"),
    pytest.param(lambda d: _key(d, "current")["public_jwk"].update(x="AAAA"), id="public-key"),
    pytest.param(_swap_blobs, id="swap-sealed-keys"),
    pytest.param(lambda d: d["keys"].pop(), id="drop-a-key"),
    pytest.param(lambda d: d.update(mac="0" * 64), id="forged-mac"),
    pytest.param(lambda d: d.pop("mac"), id="no-mac"),
]


@pytest.mark.parametrize("tamper", TAMPERING)
def test_a_tampered_export_is_refused_and_changes_nothing(
    source: KeyService, fresh: Callable[..., KeyService], tamper: Callable[[dict[str, Any]], None]
) -> None:
    doc = copy.deepcopy(export_ring(source, "payments"))
    tamper(doc)
    target = fresh()
    with pytest.raises(E.ExportTamperedError) as err:
        import_ring(target, dumps(doc), actor="restore")
    assert err.value.code == "export_tampered"
    assert target.tenants() == []


def test_a_re_signed_export_with_an_inconsistent_ring_is_still_refused(
    source: KeyService, fresh: Callable[..., KeyService]
) -> None:
    """Whoever holds the master key can re-MAC, but not make a kid lie about its key."""
    from keyturn.backup import _mac

    doc = export_ring(source, "payments")
    doc.pop("mac")
    _swap_blobs(doc)
    doc["mac"] = _mac(source.sealer.keys[0], doc)
    with pytest.raises(E.ExportTamperedError, match="does not open for tenant payments"):
        import_ring(fresh(), dumps(doc), actor="restore")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"format": "something-else"}', id="other-format"),
        pytest.param(b"[]", id="not-an-object"),
    ],
)
def test_what_is_not_an_export_is_refused(fresh: Callable[..., KeyService], data: bytes) -> None:
    with pytest.raises(E.ExportTamperedError):
        import_ring(fresh(), data, actor="restore")


def test_an_oversized_input_is_refused_before_parsing(fresh: Callable[..., KeyService]) -> None:
    with pytest.raises(E.InvalidInputError, match=f"at most {MAX_EXPORT_BYTES} bytes"):
        import_ring(fresh(), b" " * (MAX_EXPORT_BYTES + 1), actor="restore")


def test_import_needs_the_master_key_the_export_names(
    source: KeyService, fresh: Callable[..., KeyService]
) -> None:
    data = dumps(export_ring(source, "payments"))
    other = MasterKey.generate()
    with pytest.raises(E.MasterKeyError, match=source.sealer.active_id) as err:
        import_ring(fresh([other]), data, actor="restore")
    assert other.id in err.value.detail
    # Configured as a second (older) key next to a new active one, it works.
    target = fresh([other, *source.sealer.keys])
    assert import_ring(target, data, actor="restore").keys == 5


def test_import_refuses_a_tenant_that_already_exists(
    source: KeyService, fresh: Callable[..., KeyService]
) -> None:
    data = dumps(export_ring(source, "payments"))
    target = fresh()
    import_ring(target, data, actor="restore")
    jwks = target.jwks("payments")
    with pytest.raises(E.TenantExistsError, match="already exists here"):
        import_ring(target, data, actor="restore")
    assert target.jwks("payments") == jwks


# --- the CLI --------------------------------------------------------------------------------
@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for var in ("KEYTURN_DATABASE_URL", "KEYTURN_MASTER_KEY", "KEYTURN_MASTER_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYTURN_PUBLIC_URL", "https://id.example.com")
    return tmp_path / "a", tmp_path / "b"


def _cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setenv("KEYTURN_HOME", str(home))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export_then_import_into_a_fresh_home_with_the_same_master_key(
    homes: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b = homes
    assert _cli(capsys, monkeypatch, a, "init", "--json")[0] == 0
    assert _cli(capsys, monkeypatch, a, "key", "rotate")[0] == 0
    export = tmp_path / "default.ring.json"
    code, out, err = _cli(capsys, monkeypatch, a, "backup", "export", "-o", str(export), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["keys"] == 3
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    # A fresh home holding only the master key file (as restored from the key escrow).
    b.mkdir(mode=0o700)
    (b / "master.key").write_bytes((a / "master.key").read_bytes())
    os.chmod(b / "master.key", 0o600)
    code, out, err = _cli(capsys, monkeypatch, b, "backup", "import", str(export), "--json")
    assert code == 0, err
    assert json.loads(out)["master_key_id"] == summary["master_key_id"]
    jwks_a = _cli(capsys, monkeypatch, a, "jwks", "--json")[1]
    jwks_b = _cli(capsys, monkeypatch, b, "jwks", "--json")[1]
    assert jwks_a == jwks_b
    code, out, err = _cli(
        capsys, monkeypatch, b, "token", "sign", "--claims", '{"sub": "alice"}', "--json"
    )
    assert code == 0, err
    token = json.loads(out)["token"]
    code, out, err = _cli(capsys, monkeypatch, a, "token", "verify", token, "--json")
    assert code == 0, err
    assert json.loads(out)["claims"]["sub"] == "alice"


def test_cli_refuses_a_tampered_export_with_its_code(
    homes: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b = homes
    _cli(capsys, monkeypatch, a, "init")
    code, data, _ = _cli(capsys, monkeypatch, a, "backup", "export")
    assert code == 0
    doc = json.loads(data)
    doc["keys"][0]["created_at"] += 1
    export = tmp_path / "tampered.json"
    export.write_text(json.dumps(doc))
    b.mkdir(mode=0o700)
    (b / "master.key").write_bytes((a / "master.key").read_bytes())
    os.chmod(b / "master.key", 0o600)
    code, _, err = _cli(capsys, monkeypatch, b, "backup", "import", str(export))
    assert code == 6  # EXIT_INVALID_INPUT
    assert "[export_tampered]" in err
    code, _, err = _cli(capsys, monkeypatch, b, "jwks")
    assert code == 3  # nothing restored: tenant default not found
