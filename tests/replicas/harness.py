"""Several real ``keyturn serve`` processes on one database, and a PostgreSQL cluster of our own."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.server.live import free_port

KEYTURN = [sys.executable, "-m", "keyturn.cli"]


def base_env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(
        KEYTURN_HOME=str(home),
        KEYTURN_DATABASE_URL=db_url,
        KEYTURN_PUBLIC_URL="http://127.0.0.1:8080",
    )
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> Any:
    """Run ``keyturn ARGS --json`` and return the parsed output."""
    res = subprocess.run(
        [*KEYTURN, *args, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    if check and res.returncode != 0:
        raise AssertionError(f"keyturn {' '.join(args)} failed: {res.stderr}")
    return json.loads(res.stdout) if res.stdout.strip() else None


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, name: str, env: dict[str, str], logs: Path, *args: str) -> Replica:
        port = free_port()
        log_path = logs / f"{name}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [*KEYTURN, "serve", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        replica = cls(name, port, proc, log_path, log)
        try:
            replica.wait_ready()
        except BaseException:
            replica.stop()
            raise
        return replica

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.tail()}")
                try:
                    if c.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self.log.close()


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PgCluster:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) that a test may stop and start."""

    def __init__(self, root: Path) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("initdb/pg_ctl not found (install postgresql)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(root, "postgres")
            os.chmod(root, 0o700)
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)
