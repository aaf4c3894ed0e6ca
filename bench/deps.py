"""Install what the benchmarks need, or refuse naming exactly what failed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

from bench._common import BenchError, say

# Debian packages providing each tool; taskset comes with util-linux.
APT_TOOLS = {"wrk": "wrk", "nginx": "nginx", "taskset": "util-linux"}
# Several agents may install at once: wait for the dpkg lock instead of failing.
LOCK = ("-o", "DPkg::Lock::Timeout=900")
PY_MODULES = {"jwt": "PyJWT[crypto]", "joserfc": "joserfc"}

NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # benchmark: (tools, python modules)
    "sign": ((), ("jwt", "joserfc")),
    "verify": ((), ("jwt", "joserfc")),
    "jwks-http": (("wrk", "nginx", "taskset"), ()),
    "sign-http": (("wrk", "taskset"), ()),
    "sign-api": (("wrk", "taskset"), ()),
    "refresh-http": (("taskset",), ()),
    "sweep": (("wrk", "taskset"), ("sqlalchemy", "psycopg")),
}


def which(tool: str) -> str | None:
    # nginx lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin")


def ensure(names: list[str], *, install: bool = True) -> None:
    tools = sorted({t for n in names for t in NEEDS[n][0]})
    modules = sorted({m for n in names for m in NEEDS[n][1]})
    missing_tools = [t for t in tools if which(t) is None]
    missing_mods = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing_tools:
        if not install:
            raise BenchError(f"missing tools: {', '.join(missing_tools)} (--no-install given)")
        _apt_install(missing_tools)
    if missing_mods:
        if not install:
            raise BenchError(f"missing Python modules: {', '.join(missing_mods)}")
        _pip_install(missing_mods)


def _apt_install(tools: list[str]) -> None:
    pkgs = sorted({APT_TOOLS[t] for t in tools})
    if shutil.which("apt-get") is None:
        raise BenchError(f"{', '.join(tools)} missing and there is no apt-get to install them")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise BenchError(f"{', '.join(tools)} missing; installing needs root (or sudo)")
        sudo = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"bench: installing {', '.join(pkgs)} with apt-get (missing: {', '.join(tools)})")
    for cmd in (
        [*sudo, "apt-get", *LOCK, "update", "-q"],
        [*sudo, "apt-get", *LOCK, "install", "-y", "-q", "--no-install-recommends", *pkgs],
    ):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise BenchError(
                f"`{' '.join(cmd)}` failed (exit {res.returncode}): {' / '.join(tail)}"
            )
    still = [t for t in tools if which(t) is None]
    if still:
        raise BenchError(f"apt-get installed {', '.join(pkgs)} but {', '.join(still)} missing")


def _pip_install(modules: list[str]) -> None:
    reqs = [PY_MODULES.get(m, m) for m in modules]
    say(f"bench: installing {', '.join(reqs)} with pip into {sys.prefix}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", *reqs]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise BenchError(f"`{' '.join(cmd)}` failed: {' / '.join(tail)}")
    importlib.invalidate_caches()
    still = [m for m in modules if importlib.util.find_spec(m) is None]
    if still:
        raise BenchError(f"pip installed {', '.join(reqs)} but cannot import {', '.join(still)}")
