"""``keyturn oauth-client`` and ``keyturn session``: the flow, JSON output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keyturn.cli import main


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
    assert main(["init"]) == 0
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def jrun(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_client_and_session_flow(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "oauth-client", "create", "--audience", "api")
    assert code == 0 and "shown once" in err and "kts_" in out
    pub = jrun(capsys, "oauth-client", "create", "--auth-method", "none")
    assert pub["client_secret"] is None and pub["grant_types"] == ["refresh_token"]
    listed = jrun(capsys, "oauth-client", "list")
    assert len(listed) == 2
    opened = jrun(
        capsys,
        "session",
        "open",
        "--client",
        pub["client_id"],
        "--subject",
        "alice",
        "--claims",
        '{"role": "buyer"}',
    )
    assert opened["refresh_token"].startswith("ktr_")
    sid = opened["session"]["session_id"]
    assert [s["session_id"] for s in jrun(capsys, "session", "list", "--subject", "alice")] == [sid]
    code, out, _ = run(capsys, "session", "list")
    assert sid in out and "SUBJECT" in out
    assert jrun(capsys, "session", "policy", "--access-ttl", "5m")["access_ttl"] == 300
    assert jrun(capsys, "session", "revoke-subject", "alice") == {
        "subject": "alice",
        "revoked": [sid],
    }
    assert jrun(capsys, "session", "show", sid)["revoked_reason"] == "logged out everywhere"
    rotated = jrun(capsys, "oauth-client", "rotate-secret", listed[0]["client_id"])
    assert rotated["client_secret"].startswith("kts_")
    assert jrun(capsys, "oauth-client", "revoke", listed[0]["client_id"])["revoked_at"]
    assert jrun(capsys, "session", "purge") == {"purged": 0}
    audit = jrun(capsys, "audit", "list", "--limit", "20")
    events = {a["event"] for a in audit}
    assert {"oauth_client.created", "session.opened", "session.subject_revoked"} <= events


@pytest.mark.parametrize(
    ("args", "exit_code", "code"),
    [
        pytest.param(
            ["session", "open", "--client", "ktc_" + "0" * 24, "--subject", "a"],
            3,
            "oauth_client_not_found",
            id="unknown-client",
        ),
        pytest.param(["session", "show", "0" * 32], 3, "session_not_found", id="unknown-session"),
        pytest.param(
            ["session", "policy", "--reuse-grace", "2m"], 6, "invalid_input", id="long-grace"
        ),
        pytest.param(
            ["oauth-client", "create", "--auth-method", "none", "--grant", "client_credentials"],
            6,
            "invalid_input",
            id="public-cc",
        ),
        pytest.param(
            ["oauth-client", "show", "ktc_nope", "--tenant", "nosuch"],
            3,
            "tenant_not_found",
            id="unknown-tenant",
        ),
    ],
)
def test_errors_exit_with_their_code(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], exit_code: int, code: str
) -> None:
    got, _, err = run(capsys, *args)
    assert got == exit_code, err
    assert f"[{code}]" in err
