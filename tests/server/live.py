"""A real ``keyturn serve`` subprocess on a free 127.0.0.1 port, with its own KEYTURN_HOME."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, port: int, public_url: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KEYTURN_") or k == "KEYTURN_TEST_POSTGRES_URL"
    }
    env["KEYTURN_HOME"] = str(home)
    env["KEYTURN_PUBLIC_URL"] = public_url or f"http://127.0.0.1:{port}"
    return env


@dataclass
class LiveServer:
    home: Path
    port: int
    env: dict[str, str]
    token: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``keyturn ARGS`` as another process on the same home (as an operator would)."""
        return subprocess.run(
            [sys.executable, "-m", "keyturn.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    @classmethod
    def start(
        cls,
        home: Path,
        *serve_args: str,
        public_url: str | None = None,
        scheduler_interval: str | None = None,
    ) -> LiveServer:
        """Init ``home``, create an admin API key and start ``keyturn serve``.

        On a free 127.0.0.1 port. ``public_url`` (default: the server's own URL) is what the
        documents name, e.g. a proxy in front; ``scheduler_interval`` (e.g. ``"0.2s"``) runs the
        rotation scheduler instead of ``--no-scheduler``.
        """
        port = free_port()
        env = _env(home, port, public_url)
        base = [sys.executable, "-m", "keyturn.cli"]
        subprocess.run([*base, "init"], env=env, check=True, capture_output=True, timeout=60)
        token = subprocess.run(
            [*base, "apikey", "create", "--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        log = (home / "serve.log").open("wb")
        proc = subprocess.Popen(
            [
                *base,
                "serve",
                "--port",
                str(port),
                *(
                    ["--scheduler-interval", scheduler_interval]
                    if scheduler_interval is not None
                    else ["--no-scheduler"]
                ),
                "--poll-interval",
                "0.2s",
                *serve_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = cls(home, port, env, token, proc, log)
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"keyturn serve exited: {self.read_log()}")
                try:
                    if c.get(f"{self.url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"keyturn serve not ready in {STARTUP_TIMEOUT}s: {self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return (self.home / "serve.log").read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 15.0) -> int | None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            return self.proc.returncode
        finally:
            self.log.close()
