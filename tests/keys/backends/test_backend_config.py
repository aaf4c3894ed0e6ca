"""Choosing a tenant's key backend: flags, configuration, and what is refused (no token needed)."""

from __future__ import annotations

import argparse

import pytest

from keyturn import errors as E
from keyturn.cli.key_backend import add_key_backend_opts, key_backend_from_args
from keyturn.config import Settings
from keyturn.keys.backends import SOFTWARE, BackendSpec

URI = "pkcs11:token=prod"


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_key_backend_opts(p)
    return p.parse_args(list(argv))


def test_default_is_software_and_configuration_sets_another() -> None:
    plain = Settings.from_env({"KEYTURN_HOME": "/tmp/kt"})
    assert plain.key_backend == SOFTWARE
    assert key_backend_from_args(_args(), plain) == SOFTWARE
    hsm = Settings.from_env(
        {"KEYTURN_HOME": "/tmp/kt", "KEYTURN_KEY_BACKEND": "pkcs11", "KEYTURN_PKCS11_URI": URI}
    )
    assert hsm.key_backend == BackendSpec("pkcs11", URI)  # type: ignore[arg-type]
    assert key_backend_from_args(_args(), hsm) == hsm.key_backend
    # Flags win over configuration; a URI alone implies pkcs11.
    assert key_backend_from_args(_args("--key-backend", "software"), hsm) == SOFTWARE
    assert key_backend_from_args(_args("--pkcs11-uri", "pkcs11:token=b"), plain) == BackendSpec(
        "pkcs11",  # type: ignore[arg-type]
        "pkcs11:token=b",
    )


def test_misconfiguration_is_a_config_error() -> None:
    with pytest.raises(E.ConfigError, match="needs a URI"):
        Settings.from_env({"KEYTURN_HOME": "/tmp/kt", "KEYTURN_KEY_BACKEND": "pkcs11"})
    with pytest.raises(E.ConfigError, match="unknown key backend"):
        Settings.from_env({"KEYTURN_HOME": "/tmp/kt", "KEYTURN_KEY_BACKEND": "kms"})


def test_pkcs11_flag_without_uri_is_refused() -> None:
    plain = Settings.from_env({"KEYTURN_HOME": "/tmp/kt"})
    with pytest.raises(E.InvalidInputError, match="--pkcs11-uri"):
        key_backend_from_args(_args("--key-backend", "pkcs11"), plain)


def test_error_codes_are_in_the_tree() -> None:
    doc = E.__doc__ or ""
    for cls in (
        E.KeyBackendError,
        E.TokenUnavailableError,
        E.TokenLoginError,
        E.KeyObjectMissingError,
        E.KeyBackendUnsupportedError,
    ):
        assert f"{cls.__name__}" in doc and cls.code in doc
    assert issubclass(E.TokenLoginError, E.KeyBackendError)
    assert issubclass(E.KeyBackendUnsupportedError, E.InvalidInputError)
