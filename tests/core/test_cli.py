"""The CLI: the README's example flow, exit codes, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from keyturn.cli import main

ES_PEM_PKCS8 = None


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path / "home"))
    for var in (
        "KEYTURN_DATABASE_URL",
        "KEYTURN_MASTER_KEY",
        "KEYTURN_MASTER_KEY_FILE",
        "KEYTURN_PUBLIC_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def jrun(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_readme_flow(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init")
    assert code == 0 and "created tenant 'default' (RS256)" in out
    mode = stat.S_IMODE((home / "master.key").stat().st_mode)
    assert mode == 0o600
    assert run(capsys, "init")[0] == 0  # idempotent
    assert (
        run(
            capsys,
            "tenant",
            "create",
            "payments",
            "--alg",
            "ES256",
            "--rotation-period",
            "7d",
            "--token-ttl",
            "1h",
        )[0]
        == 0
    )
    code, token, _ = run(
        capsys,
        "token",
        "sign",
        "--tenant",
        "payments",
        "--claims",
        '{"sub": "alice", "aud": "api"}',
    )
    token = token.strip()
    assert code == 0 and token.count(".") == 2
    verified = jrun(capsys, "token", "verify", "--tenant", "payments", "--aud", "api", token)
    assert verified["claims"]["sub"] == "alice"  # type: ignore[index]
    code, _, err = run(capsys, "key", "rotate", "--tenant", "payments")
    assert code == 0 and "early rotation" in err  # warned, not refused
    code, _, err = run(
        capsys, "key", "rotate-and-revoke", "--tenant", "payments", "--reason", "key leaked"
    )
    assert code == 0
    jwks = jrun(capsys, "jwks", "--tenant", "payments")
    assert len(jwks["keys"]) == 3  # type: ignore[index]
    assert all("d" not in k for k in jwks["keys"])  # type: ignore[index]
    code, _, err = run(capsys, "token", "verify", "--tenant", "payments", "--aud", "api", token)
    assert code == 0  # signed by the first key, now previous (not revoked)
    keys = jrun(capsys, "key", "list", "--tenant", "payments", "--all")
    assert sorted(k["state"] for k in keys) == ["current", "next", "previous", "revoked"]  # type: ignore[union-attr, index]
    assert all("sealed_private" not in k for k in keys)  # type: ignore[union-attr]
    plan = jrun(capsys, "plan", "--tenant", "payments", "--horizon", "15d")
    assert [s["event"] for s in plan["payments"]][:3] == ["retire", "rotate", "retire"]  # type: ignore[index]
    assert jrun(capsys, "audit", "verify")["intact"] is True  # type: ignore[index]


def test_revoke_all_says_how_long_verifiers_may_reject(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "init")
    code, out, err = run(capsys, "key", "revoke", "--all", "--reason", "store leaked")
    assert code == 0
    assert "revoked 2 keys" in out
    assert "until their cached JWKS expires, up to 11m" in err


def snapshot(capsys: pytest.CaptureFixture[str]) -> object:
    return jrun(capsys, "key", "list", "--all"), len(
        jrun(capsys, "audit", "list", "--limit", "1000")
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        pytest.param(
            ["token", "sign", "--claims", "{not json"],
            6,
            "claims are not valid JSON",
            id="bad-json",
        ),
        pytest.param(
            ["token", "sign", "--claims", "[1, 2]"], 6, "must be a JSON object", id="non-object"
        ),
        pytest.param(
            ["token", "sign", "--tenant", "nope"], 3, "no tenant named 'nope'", id="unknown-tenant"
        ),
        pytest.param(
            ["token", "sign", "--ttl", "2h"], 6, "exceeds the tenant's maximum", id="ttl-cap"
        ),
        pytest.param(
            ["token", "sign", "--claims", "@/nonexistent/file"], 6, "cannot read", id="missing-file"
        ),
        pytest.param(
            ["key", "revoke", "nokid", "--reason", "x"], 3, "has no key nokid", id="unknown-kid"
        ),
        pytest.param(["key", "revoke", "--reason", "x"], 6, "give the kid", id="no-kid"),
        pytest.param(
            ["tenant", "create", "Bad_Name"], 6, "invalid tenant name", id="bad-tenant-name"
        ),
        pytest.param(["tenant", "create", "default"], 4, "already exists", id="duplicate-tenant"),
        pytest.param(
            ["tenant", "create", "x", "--rotation-period", "1m"], 5, "pre-publication", id="unsafe"
        ),
        pytest.param(
            ["tenant", "create", "x", "--token-ttl", "soon"],
            6,
            "invalid duration",
            id="bad-duration",
        ),
        pytest.param(["token", "verify", "abc.def.ghi"], 7, "token_", id="bad-token"),
        pytest.param(["token", "verify", "x" * 20000], 7, "token_too_large", id="huge-token"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, needle: str
) -> None:
    run(capsys, "init")
    before = snapshot(capsys)
    got, out, err = run(capsys, *args)
    assert got == code, err
    assert err.count("\n") == 1 and needle in err and err.startswith("keyturn: error")
    assert snapshot(capsys) == before


def test_import_pem_with_passphrase(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        PrivateFormat,
    )

    from keyturn.keys.algorithms import Alg
    from keyturn.keys.generate import generate_private_key
    from keyturn.keys.jwk import thumbprint

    run(capsys, "init")
    key = generate_private_key(Alg.RS256)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"s3cret"))
    path = tmp_path / "k.pem"
    path.write_bytes(pem)
    before = snapshot(capsys)
    monkeypatch.setenv("PW", "wrong")
    code, _, err = run(capsys, "key", "import", str(path), "--password-env", "PW")
    assert code == 6 and "wrong passphrase" in err
    assert snapshot(capsys) == before
    monkeypatch.setenv("PW", "s3cret")
    code, out, err = run(
        capsys, "key", "import", str(path), "--password-env", "PW", "--replace-next"
    )
    assert code == 0, err
    assert thumbprint(key) in out
    assert "s3cret" not in out + err


def test_master_key_rotate_keeps_everything_working(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "init")
    old = (home / "master.key").read_text()
    res = jrun(capsys, "master-key", "rotate")
    assert res["resealed"] == 2  # type: ignore[index]
    new = (home / "master.key").read_text()
    assert new != old and stat.S_IMODE(os.stat(home / "master.key").st_mode) == 0o600
    assert len([ln for ln in new.splitlines() if ln.startswith("mk1:")]) == 2
    code, token, err = run(capsys, "token", "sign")
    assert code == 0, err


def test_wrong_master_key_is_a_clear_error(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyturn.keys.sealing import MasterKey

    run(capsys, "init")
    monkeypatch.setenv("KEYTURN_MASTER_KEY", MasterKey.generate().encode())
    code, _, err = run(capsys, "token", "sign")
    assert code == 9 and "master_key_invalid" in err and "not configured" in err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["--help"],
        ["key", "--help"],
        ["key", "rotate", "--help"],
        ["tenant", "create", "--help"],
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out
