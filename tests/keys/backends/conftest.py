"""A SoftHSM2 token initialised once per test run in a temporary directory.

SoftHSM2 comes from Debian's ``softhsm2`` (``scripts/install-test-deps`` installs it) and
python-pkcs11 from PyPI (the dev extra). Without them these tests skip with a hint, except in
CI (``CI=true``, see tests/tools.py), where a missing token is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keyturn.clock import FakeClock
from keyturn.keys.backends import KeyBackends
from keyturn.keys.backends.pkcs11 import MODULE_ENV, PIN_ENV, Pkcs11Config
from keyturn.keys.sealing import Sealer
from tests.tools import skip_or_fail

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
LABEL = "keyturn-test"
PIN = "4711-test"
SO_PIN = "so-4711-test"
HINT = (
    "SoftHSM2 or python-pkcs11 missing ({why}): run scripts/install-test-deps "
    "(apt-get install softhsm2) and scripts/setup to run the PKCS#11 backend tests"
)


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    tokens: Path
    module: str
    label: str = LABEL
    pin: str = PIN

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label}"

    def env(self) -> dict[str, str]:
        return {MODULE_ENV: self.module, PIN_ENV: self.pin, "SOFTHSM2_CONF": str(self.conf)}

    def session(self) -> Any:
        """A raw session of our own, to look at the token from outside keyturn."""
        import pkcs11

        token = pkcs11.lib(self.module).get_token(token_label=self.label)
        try:
            return token.open(rw=True, user_pin=self.pin)
        except pkcs11.UserAlreadyLoggedIn:  # a backend of this process logged in already
            return token.open(rw=True)

    def reinitialize(self, *, may_fail: bool = False) -> None:
        """C_Finalize + C_Initialize: every session of this process is lost (a token reset).

        With the token directory gone SoftHSM's C_Initialize fails: the module is then left
        uninitialised, as a module whose device vanished would be (``may_fail``)."""
        import pkcs11

        lib = pkcs11.lib(self.module)
        try:
            lib.reinitialize()
        except pkcs11.PKCS11Error:
            if not may_fail:
                raise


def _missing(why: str) -> None:
    skip_or_fail(HINT.format(why=why))  # skips locally; fails under CI=true


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULE_CANDIDATES if Path(m).exists()), None)
    if util is None or module is None:
        _missing("softhsm2-util not found" if util is None else "libsofthsm2.so not found")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        _missing("python-pkcs11 not installed")
    assert util is not None and module is not None
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    old = os.environ.get("SOFTHSM2_CONF")
    # SoftHSM reads its configuration at C_Initialize: set before the module is first loaded.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield SoftHsm(conf, tokens, module)
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture
def p11_env(softhsm: SoftHsm) -> dict[str, str]:
    """A mutable environment the backends read PINs from (tests change it)."""
    return softhsm.env()


@pytest.fixture
def backends(sealer: Sealer, softhsm: SoftHsm, p11_env: dict[str, str]) -> Iterator[KeyBackends]:
    b = KeyBackends(sealer, Pkcs11Config((softhsm.module,), p11_env))
    yield b
    b.close()


@pytest.fixture
def token_service(store, sealer: Sealer, clock: FakeClock, backends: KeyBackends):  # type: ignore[no-untyped-def]
    from keyturn.service import KeyService

    return KeyService(store, sealer, clock, backends=backends)


def token_objects(softhsm: SoftHsm, label_prefix: str) -> list[tuple[str, str]]:
    """(id hex, class) of every object in the token whose label starts with the prefix."""
    import pkcs11

    with softhsm.session() as s:
        out = []
        for obj in s.get_objects():
            label = obj[pkcs11.Attribute.LABEL]
            if label.startswith(label_prefix):
                out.append((bytes(obj[pkcs11.Attribute.ID]).hex(), obj.object_class.name))
        return sorted(out)
