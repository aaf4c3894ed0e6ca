"""A real ``keyturn serve`` over loopback with a token-backed tenant, restarted.

The keys stay in the token across restarts (the ring holds only object ids); a server started
with a wrong PIN is not ready and says why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import jwt
import orjson
import pytest

from keyturn.keys.backends.pkcs11 import PIN_ENV

from .conftest import SoftHsm

pytestmark = pytest.mark.slow

API = "/api/v1"
READY_TIMEOUT = 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]
    log_path: Path

    def answer(self, path: str) -> httpx.Response:
        """The first answer to ``path`` (any status), waiting for the port to open."""
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=5) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("keyturn serve exited: " + self.read_log())
                try:
                    return c.get(self.url + path)
                except httpx.TransportError:
                    time.sleep(0.1)
        raise RuntimeError("keyturn serve did not answer: " + self.read_log())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            r = self.answer("/readyz")
            if r.status_code == 200:
                return
            time.sleep(0.1)
        raise RuntimeError("not ready: " + self.read_log())

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def home(tmp_path: Path, softhsm: SoftHsm) -> tuple[Path, dict[str, str], int]:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KEYTURN_") or k == "KEYTURN_TEST_POSTGRES_URL"
    }
    env.update(softhsm.env())
    env["KEYTURN_HOME"] = str(tmp_path / "home")
    env["KEYTURN_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    return tmp_path, env, port


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "keyturn.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _serve(tmp: Path, env: dict[str, str], port: int, n: int) -> Serve:
    log_path = tmp / f"serve-{n}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyturn.cli", "serve", "--port", str(port), "--no-scheduler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Serve(proc, f"http://127.0.0.1:{port}", log, log_path)


def _verify(url: str, token: str) -> dict[str, Any]:
    jwks = httpx.get(f"{url}/t/hsm/.well-known/jwks.json", timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"])  # type: ignore[no-any-return]


def test_serve_restart_keeps_signing_with_keys_in_the_token(
    home: tuple[Path, dict[str, str], int], softhsm: SoftHsm
) -> None:
    tmp, env, port = home
    _cli(env, "init")
    created = orjson.loads(
        _cli(
            env,
            "tenant",
            "create",
            "hsm",
            "--alg",
            "ES256",
            "--key-backend",
            "pkcs11",
            "--pkcs11-uri",
            softhsm.uri,
            "--json",
        )
    )
    assert [e["event"] for e in created["events"]] == ["key.created", "key.created"]
    assert f"key backend:     pkcs11 {softhsm.uri}" in _cli(env, "tenant", "show", "hsm")
    shown = orjson.loads(_cli(env, "key", "list", "--tenant", "hsm", "--json"))
    assert all(k["token"]["label"].startswith("keyturn:hsm:") for k in shown)
    assert not any("sealed" in str(k) for k in shown)
    admin = {"Authorization": "Bearer " + _cli(env, "apikey", "create", "--role", "admin").strip()}

    tokens = []
    for n in range(2):  # the second server starts on the same home: keys still in the token
        server = _serve(tmp, env, port, n)
        try:
            server.wait_ready()
            r = httpx.post(
                f"{server.url}{API}/tenants/hsm/tokens/sign",
                json={"claims": {"sub": f"user-{n}"}},
                headers=admin,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            tokens.append(r.json()["token"])
            for t in tokens:
                assert _verify(server.url, t)["iss"].endswith("/t/hsm")
        finally:
            server.stop()
    assert len({jwt.get_unverified_header(t)["kid"] for t in tokens}) == 1
    assert [_verify_sub(t) for t in tokens] == ["user-0", "user-1"]

    # A wrong PIN: the server runs, is not ready, and says why; signing fails the same way.
    bad = {**env, PIN_ENV: "not-the-pin"}
    server = _serve(tmp, bad, port, 2)
    try:
        r = server.answer("/readyz")
        assert r.status_code == 503
        assert r.json()["code"] == "token_login_failed"
        r = httpx.post(
            f"{server.url}{API}/tenants/hsm/tokens/sign",
            json={"claims": {"sub": "x"}},
            headers=admin,
            timeout=30,
        )
        assert r.status_code == 503 and r.json()["code"] == "token_login_failed"
        # The public documents keep being served: verifiers are unaffected.
        assert httpx.get(f"{server.url}/t/hsm/.well-known/jwks.json", timeout=10).status_code == 200
    finally:
        server.stop()


def _verify_sub(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])
