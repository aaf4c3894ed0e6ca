"""Issue #14: a fresh ``keyturn serve --port N`` publishes and signs for port N."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from keyturn.verifier import Verifier

from .live import LiveServer, free_port

pytestmark = pytest.mark.slow


def test_fresh_serve_on_another_port_publishes_that_port(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(tmp_path)
    base = [sys.executable, "-m", "keyturn.cli"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*base, "serve", "--port", str(port), "--no-scheduler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(tmp_path, port, env, "", proc, log)
    try:
        server.wait_ready()
        token = subprocess.run(
            [*base, "apikey", "create", "--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as c:
            doc = c.get("/.well-known/openid-configuration").json()
            assert doc["issuer"] == url
            assert doc["jwks_uri"] == f"{url}/.well-known/jwks.json"
            r = c.post(
                "/api/v1/tenants/default/tokens/sign",
                json={"claims": {"sub": "u1"}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
            signed = r.json()["token"]
        assert Verifier(issuer=url, algorithms=["RS256"]).verify(signed)["iss"] == url
        key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(signed)
        assert jwt.decode(signed, key.key, algorithms=["RS256"], issuer=url)["sub"] == "u1"
    finally:
        server.stop()


def test_slow_header_connections_are_closed(tmp_path: Path) -> None:
    import socket
    import time

    server = LiveServer.start(tmp_path, "--header-timeout", "1s")
    socks: list[socket.socket] = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(s)
        t0 = time.monotonic()
        for s in socks[:20]:
            s.sendall(b"X-Slow: 1\r\n")  # trickling more header bytes does not extend it
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, 8.0 - (time.monotonic() - t0)))
            try:
                if s.recv(4096) == b"":
                    closed += 1
            except (TimeoutError, ConnectionResetError):
                pass
        assert closed == 40
        assert time.monotonic() - t0 < 8.0
        # A complete request on a fresh connection is served as always.
        assert httpx.get(f"{server.url}/.well-known/jwks.json", timeout=5).status_code == 200
    finally:
        for s in socks:
            s.close()
        server.stop()


@pytest.mark.parametrize("form", ["--port N", "--port=N"])
def test_the_readme_serve_command_with_a_port_publishes_that_port(
    tmp_path: Path, form: str
) -> None:
    """`./scripts/serve --port N`: `keyturn init` and the server agree on the issuer (the
    script used to export the public URL of port 8080 whatever --port said)."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(tmp_path)
    args = ["--port", str(port)] if form == "--port N" else [f"--port={port}"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(root / "scripts" / "serve"), *args, "--no-scheduler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(tmp_path, port, env, "", proc, log)
    try:
        server.wait_ready()
        url = f"http://127.0.0.1:{port}"
        doc = httpx.get(f"{url}/.well-known/openid-configuration", timeout=10).json()
        assert (doc["issuer"], doc["jwks_uri"]) == (url, f"{url}/.well-known/jwks.json")
        assert "but this server publishes at" not in server.read_log()  # no mismatch warning
    finally:
        server.stop()
