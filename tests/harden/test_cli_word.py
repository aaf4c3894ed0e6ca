"""Issue #14: a CLI that keeps its word (global options, --tenant, issuer, audit anchor, help)."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from keyturn.cli import build_parser, main


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


def init(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init")[0] == 0


def test_global_json_before_the_command_prints_json(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    code, out, _ = run(capsys, "--json", "tenant", "list")
    assert code == 0
    assert [t["name"] for t in json.loads(out)] == ["default"]
    code, out, _ = run(capsys, "tenant", "list", "--json")
    assert [t["name"] for t in json.loads(out)] == ["default"]


def test_global_actor_before_the_command_is_the_audited_actor(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    assert run(capsys, "--actor", "alice", "key", "rotate", "--reason", "drill")[0] == 0
    assert run(capsys, "key", "rotate", "--actor", "bob")[0] == 0
    code, out, _ = run(capsys, "audit", "list", "--event", "key.rotated", "--json")
    assert [r["actor"] for r in json.loads(out)] == ["bob", "alice"]


def test_tenant_show_and_set_policy_take_tenant_option(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    assert run(capsys, "tenant", "create", "pay", "--alg", "ES256")[0] == 0
    code, out, _ = run(capsys, "tenant", "show", "--tenant", "pay", "--json")
    assert code == 0 and json.loads(out)["name"] == "pay"
    code, out, _ = run(capsys, "tenant", "set-policy", "-t", "pay", "--token-ttl", "30m")
    assert code == 0 and "token ttl (T):   30m" in out
    code, out, err = run(capsys, "tenant", "show", "pay")
    assert code == 0 and "tenant:          pay" in out
    assert "deprecated" in err and "--tenant pay" in err
    code, _, err = run(capsys, "tenant", "show", "pay", "--tenant", "other")
    assert code == 6 and "use --tenant only" in err


def test_issuer_change_needs_force_and_is_audited(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    code, _, err = run(capsys, "tenant", "set-issuer", "https://auth.example.com")
    assert code == 4 and "issuer_change_refused" in err
    code, out, _ = run(capsys, "tenant", "show", "--json")
    assert json.loads(out)["issuer"] == "http://127.0.0.1:8080"
    code, out, _ = run(
        capsys, "--actor", "ops", "tenant", "set-issuer", "https://auth.example.com", "--force"
    )
    assert code == 0 and "https://auth.example.com" in out
    code, out, _ = run(capsys, "audit", "list", "--event", "tenant.issuer_changed", "--json")
    (rec,) = json.loads(out)
    assert rec["actor"] == "ops"
    assert rec["details"] == {
        "old": "http://127.0.0.1:8080",
        "new": "https://auth.example.com",
        "forced": True,
    }
    code, _, err = run(capsys, "tenant", "set-issuer", "ftp://x", "--force")
    assert code == 6


def delete_last(home: Path, n: int) -> None:
    db = sqlite3.connect(home / "keyturn.db")
    with db:
        for _ in range(n):
            db.execute("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)")
    db.close()


def test_audit_anchor_catches_a_deleted_last_record(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    assert run(capsys, "key", "rotate")[0] == 0
    code, out, _ = run(capsys, "audit", "head", "--json")
    anchor = json.loads(out)
    assert code == 0 and anchor["count"] >= 3 and len(anchor["head"]) == 64
    expect = ["--expect-head", anchor["head"], "--expect-count", str(anchor["count"])]
    assert run(capsys, "audit", "verify", *expect)[0] == 0
    assert run(capsys, "key", "rotate")[0] == 0  # appended records keep the anchor valid
    assert run(capsys, "audit", "verify", *expect)[0] == 0
    later = json.loads(run(capsys, "audit", "head", "--json")[1])["count"]
    assert later > anchor["count"]
    delete_last(home, later - anchor["count"])  # only records appended after the anchor
    assert run(capsys, "audit", "verify")[0] == 0
    assert run(capsys, "audit", "verify", *expect)[0] == 0
    delete_last(home, 1)  # an anchored record
    assert run(capsys, "audit", "verify")[0] == 0  # the chain alone cannot see it
    code, out, _ = run(capsys, "audit", "verify", *expect)
    assert code == 1 and "fewer than the" in out


def test_audit_list_since_until(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init(capsys)
    code, out, _ = run(capsys, "audit", "list", "--json")
    recs = json.loads(out)
    first = min(r["at"] for r in recs)
    code, out, _ = run(capsys, "audit", "list", "--until", str(first), "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "audit", "list", "--since", "2000-01-01T00:00:00Z", "--json")
    assert len(json.loads(out)) == len(recs)
    code, out, _ = run(capsys, "audit", "list", "--since", "2999-01-01", "--json")
    assert json.loads(out) == []
    code, _, err = run(capsys, "audit", "list", "--since", "yesterday")
    assert code == 6 and "not a time" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("keyturn 0.")


def _walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += _walk(child, f"{path} {name}")
        elif action.help in (None, "") and action.dest != "help":
            missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help() -> None:
    assert _walk(build_parser(), "keyturn") == []


def test_key_show_prints_times_not_epoch_floats_or_none(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(capsys)
    code, out, _ = run(capsys, "key", "list", "--json")
    kid = json.loads(out)[0]["kid"]
    code, out, _ = run(capsys, "key", "show", kid)
    assert code == 0
    assert "None" not in out
    created = next(line for line in out.splitlines() if line.startswith("created_at"))
    assert created.split()[1].startswith("20") and created.endswith("Z")
    assert "revoked_at         -" in out
    code, out, _ = run(capsys, "key", "show", kid, "--json")
    assert isinstance(json.loads(out)["created_at"], float)


def test_plan_fits_a_terminal(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init(capsys)
    code, out, _ = run(capsys, "plan")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 120
    code, out, _ = run(capsys, "plan", "--json")
    steps = json.loads(out)["default"]
    assert len(steps[0]["signing"]) == 43  # --json keeps whole kids


def test_key_import_as_next_refuses_to_destroy_the_next_key(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from keyturn.keys.algorithms import Alg
    from keyturn.keys.generate import generate_private_key

    init(capsys)
    keys = json.loads(run(capsys, "key", "list", "--json")[1])
    old_next = next(k["kid"] for k in keys if k["state"] == "next")
    path = tmp_path / "k.pem"
    pem = generate_private_key(Alg.RS256).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    path.write_bytes(pem)
    code, _, err = run(capsys, "key", "import", str(path))
    assert code == 4
    assert old_next in err and "destroys its private key" in err and "--replace-next" in err
    keys = json.loads(run(capsys, "key", "list", "--json")[1])
    assert next(k["kid"] for k in keys if k["state"] == "next") == old_next
    code, _, err = run(capsys, "key", "import", str(path), "--replace-next")
    assert code == 0
    assert f"next key {old_next} was retired and its private key destroyed" in err


def test_serve_public_url_follows_the_bind_address() -> None:
    from keyturn.config import Settings

    fresh = Settings.from_env({"KEYTURN_HOME": "/nonexistent"})
    assert fresh.public_url == "http://127.0.0.1:8080" and not fresh.public_url_explicit
    assert fresh.serving_at("127.0.0.1", 9090).public_url == "http://127.0.0.1:9090"
    assert fresh.serving_at("0.0.0.0", 9090).public_url == "http://127.0.0.1:9090"
    assert fresh.serving_at("::1", 9090).public_url == "http://[::1]:9090"
    env = Settings.from_env(
        {"KEYTURN_HOME": "/nonexistent", "KEYTURN_PUBLIC_URL": "https://keys.example.com/"}
    )
    assert env.serving_at("127.0.0.1", 9090).public_url == "https://keys.example.com"
    flag = fresh.with_public_url("https://id.example.com:8443")
    assert flag.serving_at("127.0.0.1", 9090).public_url == "https://id.example.com:8443"


def test_serve_warns_about_an_issuer_on_another_origin() -> None:
    from keyturn.config import Settings
    from keyturn.ring.model import Policy
    from keyturn.ring.records import Tenant
    from keyturn.server.serve import issuer_warnings

    settings = Settings.from_env({"KEYTURN_HOME": "/x"}).serving_at("127.0.0.1", 9090)

    def tenant(name: str, issuer: str) -> Tenant:
        return Tenant(1, name, issuer, Policy(), False, 1, 0.0, 0.0)

    warnings = issuer_warnings(
        [
            tenant("default", "http://127.0.0.1:8080"),
            tenant("a", "http://127.0.0.1:9090/t/a"),
            tenant("b", "HTTP://127.0.0.1:9090"),
        ],
        settings,
    )
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "tenant 'default' has issuer http://127.0.0.1:8080 but this server publishes at "
        "http://127.0.0.1:9090"
    )
