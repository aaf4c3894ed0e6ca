"""The container image: built here by ``scripts/build-image``, then run under podman.

No container registry is reachable on this machine, so the base is a debootstrap root
filesystem (cached under /var/cache/keyturn-test). ``podman run`` works here with Debian's
``runc`` and explicit ``--ulimit`` values no higher than this process's hard limits (the
default runtime, crun, refuses: setrlimit without CAP_SYS_RESOURCE, then "cgroups in hybrid
mode"); the containers run with the hardening of deploy/kubernetes (read-only root, all
capabilities dropped, no new privileges, uid 10001) against the machine's PostgreSQL.

Needs root and Debian's buildah, podman, runc, debootstrap (``scripts/install-test-deps``):
skipped with that hint when missing, a failure under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.keys.sealing import MasterKey
from tests.conftest import PG_ADMIN_URL
from tests.server.live import free_port
from tests.tools import require_tool, skip_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/keyturn:test"
TOOLS = ("buildah", "podman", "runc", "debootstrap")
HINT = "run scripts/install-test-deps as root (apt-get install buildah podman runc debootstrap)"
UID = 10001


def _require_tools() -> str:
    if os.geteuid() != 0:
        skip_or_fail("building and running the image needs root")
    for tool in TOOLS:
        require_tool(tool, HINT)
    return require_tool("runc", HINT)


@pytest.fixture(scope="module")
def image() -> str:
    _require_tools()
    started = time.monotonic()
    res = subprocess.run(
        [str(ROOT / "scripts" / "build-image")],
        env={**os.environ, "KEYTURN_IMAGE": IMAGE},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.strip().splitlines()[-1] == IMAGE
    # Shown with -rP; the figures in docs/deployment.md came from here.
    print(f"image build took {time.monotonic() - started:.1f}s")
    return IMAGE


def _podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {res.stderr[-3000:]}")
    return res.stdout


def _run_args() -> list[str]:
    """How `podman run` works on this machine, with the Kubernetes manifests' hardening."""
    runc = _require_tools()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = min(nofile, 65536) if nofile != resource.RLIM_INFINITY else 65536
    nproc = min(nproc, 4096) if nproc != resource.RLIM_INFINITY else 4096
    return [
        "run",
        "--pull=never",
        "--runtime",
        runc,
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
        "--network",
        "host",  # the machine's PostgreSQL on 127.0.0.1
        "--read-only",  # readOnlyRootFilesystem
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",  # allowPrivilegeEscalation: false
        # /var/lib/keyturn is the image's VOLUME: an anonymous volume, writable, removed with
        # the container (rm -v, run --rm).
    ]


@pytest.fixture
def fresh_db() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"keyturn_image_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        _podman("rm", "-f", "-v", "-t", "0", n, check=False)


def test_image_is_built_as_the_containerfile_says(image: str) -> None:
    (info,) = json.loads(_podman("image", "inspect", image))
    cfg = info["Config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ["/opt/keyturn/bin/keyturn", "serve"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["KEYTURN_HOME"] == "/var/lib/keyturn"
    assert env["KEYTURN_HOST"] == "0.0.0.0"
    assert cfg.get("StopSignal") == "SIGTERM"
    health = info.get("HealthCheck") or info.get("Healthcheck") or cfg.get("Healthcheck")
    assert health is not None, "HEALTHCHECK lost (build with --format docker)"
    assert any("/healthz" in part for part in health["Test"])
    # Nothing to build or install with in the final image.
    mount = _podman("image", "mount", image).strip()
    try:
        root = Path(mount)
        assert (root / "opt/keyturn/bin/keyturn").exists()
        for tool in ("gcc", "cc", "c++", "make", "pip", "pip3"):
            for d in ("usr/bin", "usr/local/bin", "opt/keyturn/bin"):
                assert not (root / d / tool).exists(), f"/{d}/{tool} in the image"
        site = root / "opt/keyturn/lib/python3.11/site-packages"
        assert (site / "keyturn").is_dir()
        assert not (site / "pip").exists()
        assert not (root / "usr/lib/python3/dist-packages/pip").exists()
    finally:
        _podman("image", "unmount", image, check=False)


def _logs(name: str) -> str:
    res = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30)
    return res.stdout + res.stderr


def _wait_healthy(url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as c:
        while time.monotonic() < deadline:
            try:
                if c.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            state = _podman("inspect", "--format", "{{.State.Status}}", name, check=False)
            if state.strip() in ("exited", "stopped"):
                break
            time.sleep(0.1)
    raise AssertionError(f"{name} not ready: {_logs(name)[-3000:]}")


def _jwks(url: str) -> httpx.Response:
    r = httpx.get(f"{url}/.well-known/jwks.json", timeout=5)
    r.raise_for_status()
    return r


def _verify(token: str, jwks: dict[str, Any], issuer: str) -> dict[str, Any]:
    import jwt

    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], issuer=issuer, audience="api"
    )
    return claims


def test_two_containers_on_postgresql_serve_sign_and_rotate_then_stop_on_sigterm(
    image: str, fresh_db: str, tmp_path: Path, containers: list[str]
) -> None:
    master = MasterKey.generate().encode()
    # Replica a reads the master key from a mounted file (owned by the image's user, 0600);
    # replica b from a secret environment variable: both ways the image documents.
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    key_file = secret_dir / "master.key"
    key_file.write_text(master + "\n")
    os.chown(key_file, UID, UID)
    key_file.chmod(0o600)
    port_a, port_b = free_port(), free_port()
    public_url = f"http://127.0.0.1:{port_a}"
    tag = secrets.token_hex(3)
    base_env = [
        "-e",
        f"KEYTURN_DATABASE_URL={fresh_db}",
        "-e",
        f"KEYTURN_PUBLIC_URL={public_url}",
    ]
    a, b = f"keyturn-test-a-{tag}", f"keyturn-test-b-{tag}"
    containers += [a, b]
    _podman(
        *_run_args(),
        "-d",
        "--name",
        a,
        *base_env,
        "-e",
        f"KEYTURN_PORT={port_a}",
        "-v",
        f"{secret_dir}:/run/secrets/keyturn:ro",
        "-e",
        "KEYTURN_MASTER_KEY_FILE=/run/secrets/keyturn/master.key",
        image,
    )
    _podman(
        *_run_args(),
        "-d",
        "--name",
        b,
        *base_env,
        "-e",
        f"KEYTURN_PORT={port_b}",
        "-e",
        f"KEYTURN_MASTER_KEY={master}",
        "-e",
        "KEYTURN_NO_SCHEDULER=true",
        image,
    )
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    _wait_healthy(url_a, a)
    _wait_healthy(url_b, b)
    # The image's HEALTHCHECK, run the way the engine runs it.
    subprocess.run(["podman", "healthcheck", "run", a], check=True, capture_output=True, timeout=30)

    # One-shot containers of the same image: an admin API key, and the CronJob's command.
    def oneshot(*args: str) -> Any:
        out = _podman(
            *_run_args(),
            "--rm",
            *base_env,
            "-e",
            f"KEYTURN_MASTER_KEY={master}",
            "--entrypoint",
            "/opt/keyturn/bin/keyturn",
            image,
            *args,
            "--json",
        )
        return json.loads(out)

    token = oneshot("apikey", "create", "--role", "admin")["token"]
    auth = {"Authorization": f"Bearer {token}"}

    # JWKS: the same document from both replicas, cacheable, with a working ETag.
    ra, rb = _jwks(url_a), _jwks(url_b)
    assert ra.content == rb.content
    assert ra.headers["content-type"].startswith("application/jwk-set+json")
    assert ra.headers["cache-control"].startswith("public, max-age=")
    etag = ra.headers["etag"]
    assert (
        httpx.get(
            f"{url_a}/.well-known/jwks.json", headers={"If-None-Match": etag}, timeout=5
        ).status_code
        == 304
    )

    # Sign through a, verify against the JWKS b serves.
    r = httpx.post(
        f"{url_a}/api/v1/tenants/default/tokens/sign",
        json={"claims": {"sub": "alice", "aud": "api"}},
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    first = r.json()["token"]
    assert _verify(first, rb.json(), public_url)["sub"] == "alice"

    # Rotate through b; a learns of it (LISTEN/NOTIFY) and signs with the new current key.
    r = httpx.post(f"{url_b}/api/v1/tenants/default/keys/rotate", json={}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    new_current = next(e["kid"] for e in r.json()["events"] if e["event"] == "key.rotated")
    import jwt

    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(
            f"{url_a}/api/v1/tenants/default/tokens/sign",
            json={"claims": {"sub": "bob", "aud": "api"}},
            headers=auth,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        second = r.json()["token"]
        if jwt.get_unverified_header(second)["kid"] == new_current:
            break
        assert time.monotonic() < deadline, "replica a never signed with the rotated key"
        time.sleep(0.1)
    jwks_after = _jwks(url_a).json()
    assert _verify(second, jwks_after, public_url)["sub"] == "bob"
    # The token signed before the rotation still verifies: its key stays published.
    assert _verify(first, jwks_after, public_url)["sub"] == "alice"
    assert _jwks(url_b).json() == jwks_after

    # The CronJob's command through the image: a sweep with nothing due.
    sweep = oneshot("rotate-due")
    assert isinstance(sweep, dict | list)

    # SIGTERM: a graceful stop with exit status 0.
    for name in (a, b):
        _podman("kill", "--signal", "TERM", name)
        status = _podman("wait", name, timeout=60).strip()
        assert status == "0", _logs(name)[-2000:]
        assert "Finished server process" in _logs(name)
