"""The one place a tenant's backend spec becomes a backend object (cached per token URI)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from keyturn.keys.backends.base import BackendKind, BackendSpec, KeyBackend
from keyturn.keys.backends.pkcs11 import Pkcs11Backend, Pkcs11Config
from keyturn.keys.backends.pkcs11_uri import parse_pkcs11_uri
from keyturn.keys.backends.software import SoftwareBackend
from keyturn.keys.sealing import Sealer


class KeyBackends:
    """Backends by spec: the software one, and one PKCS#11 backend per distinct token URI."""

    def __init__(self, sealer: Sealer, pkcs11: Pkcs11Config | None = None) -> None:
        self.software = SoftwareBackend(sealer)
        self.pkcs11_config = pkcs11 or Pkcs11Config()
        self._tokens: dict[str, Pkcs11Backend] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, sealer: Sealer, env: Mapping[str, str]) -> KeyBackends:
        return cls(sealer, Pkcs11Config.from_env(env))

    def for_spec(self, spec: BackendSpec) -> KeyBackend:
        if spec.kind == BackendKind.SOFTWARE:
            return self.software
        assert spec.uri is not None  # BackendSpec refuses a pkcs11 spec without one
        with self._lock:
            backend = self._tokens.get(spec.uri)
            if backend is None:
                backend = Pkcs11Backend(parse_pkcs11_uri(spec.uri), self.pkcs11_config)
                self._tokens[spec.uri] = backend
            return backend

    def validate(self, spec: BackendSpec) -> None:
        """Refuse a spec that can never work (bad URI, module not allowed) before it is stored."""
        if spec.kind == BackendKind.PKCS11:
            assert spec.uri is not None
            self.pkcs11_config.module_for(parse_pkcs11_uri(spec.uri))

    def tokens(self) -> list[Pkcs11Backend]:
        with self._lock:
            return list(self._tokens.values())

    def close(self) -> None:
        for backend in self.tokens():
            backend.close()
