"""``inspect_jwks`` and the CLI layer: exit codes, --json, token input, no secrets echoed."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from keyturn.cli import build_parser, main
from keyturn.diagnose import EXIT_CODES, Verdict, inspect_jwks
from keyturn.diagnose._http import parse_cache_control
from keyturn.keys.algorithms import Alg

from .conftest import Issuer, Static, claims, make_key


def test_inspect_describes_every_entry(static: Static, client: httpx.Client) -> None:
    rsa = make_key(Alg.RS256)
    ec = make_key(Alg.ES384, kid="hand-named")
    ed = make_key(Alg.EdDSA)
    url = static.write(
        "jwks.json",
        {
            "keys": [
                rsa.jwk(),
                ec.jwk(),
                ed.jwk(),
                rsa.jwk(use="enc", kid="enc-key"),
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                "junk",
            ]
        },
    )
    r = inspect_jwks(url, client=client, now=time.time())
    assert r.ok
    by_kid = {k.kid: k for k in r.keys}
    assert by_kid[rsa.kid].size == 2048 and by_kid[rsa.kid].kid_is_thumbprint is True
    assert by_kid["hand-named"].crv == "P-384" and by_kid["hand-named"].kid_is_thumbprint is False
    assert by_kid[ed.kid].crv == "Ed25519" and by_kid[ed.kid].usable
    assert not by_kid["enc-key"].usable and "enc" in (by_kid["enc-key"].skip_reason or "")
    assert not by_kid["hmac"].usable and by_kid["hmac"].private_members == ("k",)
    assert r.keys[-1].skip_reason == "entry is not an object"
    assert r.cache_control.raw is None


def test_inspect_duplicate_kid(static: Static, client: httpx.Client) -> None:
    a, b = make_key(Alg.ES256, kid="dup"), make_key(Alg.ES256, kid="dup", slot=1)
    url = static.write("jwks.json", {"keys": [a.jwk(), b.jwk()]})
    r = inspect_jwks(url, client=client, now=time.time())
    assert r.error == "the JWKS has no usable signature key"
    assert all("duplicate" in (k.skip_reason or "") for k in r.keys)


@pytest.mark.parametrize(
    ("raw", "max_age", "s_maxage", "lifetime"),
    [
        pytest.param("public, max-age=600", 600, None, 600, id="plain"),
        pytest.param('max-age="60", s-maxage=3600', 60, 3600, 3600, id="cdn-longer"),
        pytest.param("no-store", None, None, None, id="no-store"),
        pytest.param("max-age=abc", None, None, None, id="garbage"),
    ],
)
def test_cache_control(
    raw: str, max_age: int | None, s_maxage: int | None, lifetime: int | None
) -> None:
    cc = parse_cache_control(raw)
    assert (cc.max_age, cc.s_maxage, cc.lifetime) == (max_age, s_maxage, lifetime)


# --- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cli_ok_text_never_echoes_token(
    issuer: Issuer, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issuer.token(time.time(), aud="api")
    code = main(["diagnose", token, "--issuer", issuer.url, "--audience", "api"])
    out = capsys.readouterr()
    assert code == 0, out
    assert "VERDICT  ok" in out.out
    assert token not in out.out + out.err
    assert token.rsplit(".", 1)[1] not in out.out + out.err


def test_cli_json_and_stdin(
    issuer: Issuer, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.token(time.time() - 7200, ttl=600)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f"Bearer {token}\n".encode())))
    code = main(["diagnose", "-", "--issuer", issuer.url, "--json"])
    out = capsys.readouterr().out
    doc = orjson.loads(out)
    assert code == EXIT_CODES[Verdict.EXPIRED] == doc["exit_code"] == 15
    assert doc["verdict"] == "expired"
    assert token not in out


def test_cli_token_from_file(issuer: Issuer, home: Path, tmp_path: Path) -> None:
    path = tmp_path / "token.txt"
    path.write_text(issuer.token(time.time()) + "\n")
    assert main(["diagnose", f"@{path}", "--jwks", issuer.jwks_url, "--json"]) == 0


def test_cli_needs_a_source(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "a.b.c"]) == 6
    assert "--issuer" in capsys.readouterr().err


def test_cli_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["diagnose", "--help"])
    text = capsys.readouterr().out
    for verdict, code in EXIT_CODES.items():
        assert f"{code:>2}  {verdict.value}" in text


def test_cli_inspect_both_spellings(
    issuer: Issuer, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect-jwks", issuer.jwks_url]) == 0
    text = capsys.readouterr().out
    assert issuer.current.kid in text and "max-age=600" in text
    assert main(["jwks", "inspect", issuer.jwks_url, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert {k["kid"] for k in doc["keys"]} == {issuer.current.kid, issuer.next.kid}
    assert main(["jwks", "inspect", issuer.url + "/nope"]) == 11
    capsys.readouterr()


def test_cli_plain_jwks_still_prints_the_tenant_set() -> None:
    args = build_parser().parse_args(["jwks", "--tenant", "acme"])
    assert args.tenant == "acme" and args.jwks_action is None and args.url is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jwks", "bogus"])


def test_cli_plain_jwks_runs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--json"]) == 0
    capsys.readouterr()
    assert main(["jwks"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert len(doc["keys"]) == 2


def test_cli_kid_not_published_exit_code(
    issuer: Issuer, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_key(Alg.ES256, slot=6)
    token = other.sign(claims(issuer.url, time.time()))
    assert main(["diagnose", token, "--issuer", issuer.url]) == 13
    assert "wrong_environment" in capsys.readouterr().out
