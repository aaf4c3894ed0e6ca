"""Processes the benchmarks start and stop themselves: keyturn servers, nginx and wrk."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._common import VENV_BIN, BenchError, say, scratch_dir
from bench.deps import which

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin(cpus: str | None) -> list[str]:
    """A ``taskset`` prefix (no prefix on a one-core machine, where pinning means nothing)."""
    if cpus is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", cpus]


@dataclass
class Proc:
    """A started process group (``start_new_session``): stopped as a group, by its own id."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def rss_kib(self) -> int:
        """Resident memory of the process and all its descendants, KiB."""
        total = 0
        todo = [self.popen.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    kids = (task / "children").read_text().split()
                    todo += [int(k) for k in kids]
        return total


@contextlib.contextmanager
def started(
    name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Proc]:
    logdir = scratch_dir(f"keyturn-bench-{name}-log-")
    log = logdir / "output.log"
    with log.open("wb") as fh:
        popen = subprocess.Popen(
            list(argv),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    proc = Proc(name, popen, log)
    try:
        yield proc
    finally:
        proc.stop()


def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> httpx.Response:
    """Poll ``url`` until it answers 200; fail with the process's log if it never does."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return r
            last = f"HTTP {r.status_code}"
            if 400 <= r.status_code < 500:
                break  # a misconfiguration, not a slow start
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise BenchError(
        f"{proc.name} did not answer {url} in {timeout:.0f}s ({last}):\n{proc.log_tail()}"
    )


# --- nginx --------------------------------------------------------------------------------------
NGINX_CONF = """\
# Written by keyturn's bench: a private instance, nothing from the system configuration.
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # uvicorn keeps connections open indefinitely: do the same for a fair comparison.
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    etag on;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        root {tmp}/www;
        location = /.well-known/jwks.json {{
            default_type application/jwk-set+json;
            add_header Cache-Control "public, max-age=600";
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_serving(body: bytes, cpus: str | None) -> Iterator[tuple[Proc, str]]:
    """nginx from a temp dir serving ``body`` at /.well-known/jwks.json; stopped afterwards."""
    exe = which("nginx")
    if exe is None:
        raise BenchError("nginx not found")
    tmp = scratch_dir("keyturn-bench-nginx-")
    # Started as root, nginx's worker runs as an unprivileged user: it must be able to read.
    tmp.chmod(0o755)
    (tmp / "www" / ".well-known").mkdir(parents=True, mode=0o755)
    doc = tmp / "www" / ".well-known" / "jwks.json"
    doc.write_bytes(body)
    doc.chmod(0o644)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, host=HOST, port=port))
    # -e: the error log before the configuration is read; -p: prefix, so nothing under /etc.
    argv = [*pin(cpus), exe, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
    with started("nginx", argv) as proc:
        url = f"http://{HOST}:{port}/.well-known/jwks.json"
        wait_http(proc, url, timeout=20)
        yield proc, url


# --- wrk ----------------------------------------------------------------------------------------
@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise BenchError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int = 32,
    cpus: str | None = "1",
    headers: Sequence[str] = (),
    script: Path | None = None,
) -> WrkResult:
    exe = which("wrk")
    if exe is None:
        raise BenchError("wrk not found")
    argv = [*pin(cpus), exe, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    out = res.stdout
    if res.returncode != 0 or "Requests/sec" not in out:
        raise BenchError(f"wrk failed ({res.returncode}): {res.stderr.strip() or out.strip()}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    return WrkResult(
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        requests=reqs,
        non_2xx_3xx=int(bad.group(1)) if bad else 0,
        socket_errors=sum(int(x) for x in errs.groups()) if errs else 0,
    )


# --- keyturn ------------------------------------------------------------------------------------
def keyturn_env(home: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KEYTURN_")  # nothing from the caller's own keyturn
    }
    env.update(
        KEYTURN_HOME=str(home),
        KEYTURN_PUBLIC_URL=f"http://{HOST}:{port}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra or {})
    return env


def serve_help() -> str:
    res = subprocess.run(
        [str(VENV_BIN / "keyturn"), "serve", "--help"], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise BenchError(
            "`keyturn serve` is not available yet (the server is being written): "
            + (res.stderr.strip().splitlines() or ["no output"])[-1]
        )
    return res.stdout


def serve_argv(port: int, *, workers: int = 1, cpus: str | None = "0") -> list[str]:
    helptext = serve_help()
    argv = [*pin(cpus), str(VENV_BIN / "keyturn"), "serve", "--host", HOST, "--port", str(port)]
    if "--workers" in helptext:
        argv += ["--workers", str(workers)]
    elif workers != 1:
        raise BenchError("`keyturn serve` has no --workers option: cannot run two workers")
    if "--no-scheduler" in helptext:
        # Scheduler sweeps would add database work in the middle of a measurement.
        argv.append("--no-scheduler")
    return argv


def report(label: str, runs: list[WrkResult]) -> None:
    for i, r in enumerate(runs, 1):
        bad = f", {r.non_2xx_3xx} non-2xx/3xx" if r.non_2xx_3xx else ""
        err = f", {r.socket_errors} socket errors" if r.socket_errors else ""
        say(
            f"  {label:<40} run {i}: {r.rps:>10,.0f} req/s  p50 {r.p50_ms:.2f} ms  "
            f"p99 {r.p99_ms:.2f} ms{bad}{err}"
        )
