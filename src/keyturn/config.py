"""Settings, built once in the entry point from the environment and passed down (never global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from keyturn.errors import ConfigError, InvalidInputError
from keyturn.jwks_http import tenant_base_url
from keyturn.keys.backends import SOFTWARE, BackendSpec
from keyturn.keys.sealing import MasterKey, load_master_keys

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 (names, not a bind)


def check_public_url(url: str, what: str) -> str:
    """An absolute http(s) URL without query or fragment, without a trailing slash."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{what} must be an http(s) URL like https://keys.example.com, got {url!r}"
        )
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise ConfigError(f"{what} has an invalid port: {url!r}") from None
    return url


def url_for_bind(host: str, port: int) -> str:
    """The URL a local client reaches a server bound to ``host:port`` at. A wildcard address
    (0.0.0.0, ::) names no host anyone else can use: loopback, and set --public-url."""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit for http and https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def default_home(env: Mapping[str, str]) -> Path:
    if env.get("KEYTURN_HOME"):
        return Path(env["KEYTURN_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "keyturn"


@dataclass(frozen=True)
class Settings:
    """Everything keyturn reads from its environment, resolved once."""

    home: Path
    database_url: str
    public_url: str
    master_key_env: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    default_tenant: str = "default"
    # True when KEYTURN_PUBLIC_URL was set: ``keyturn serve`` then keeps it; otherwise the public
    # URL follows the address serve binds to (see ``serving_at``).
    public_url_explicit: bool = False
    # The key backend for new tenants (the default one included) when none is named:
    # KEYTURN_KEY_BACKEND=pkcs11 with KEYTURN_PKCS11_URI.
    key_backend: BackendSpec = SOFTWARE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = default_home(env)
        db = env.get("KEYTURN_DATABASE_URL") or f"sqlite:///{home / 'keyturn.db'}"
        if db.startswith("postgres://"):
            db = "postgresql+psycopg://" + db[len("postgres://") :]
        elif db.startswith("postgresql://"):
            db = "postgresql+psycopg://" + db[len("postgresql://") :]
        public_url = check_public_url(
            env.get("KEYTURN_PUBLIC_URL") or DEFAULT_PUBLIC_URL, "KEYTURN_PUBLIC_URL"
        )
        mk_file = env.get("KEYTURN_MASTER_KEY_FILE")
        master_key_file = Path(mk_file).expanduser() if mk_file else home / "master.key"
        kind = env.get("KEYTURN_KEY_BACKEND") or "software"
        uri = env.get("KEYTURN_PKCS11_URI") or None
        try:
            key_backend = BackendSpec(kind, uri if kind == "pkcs11" else None)  # type: ignore[arg-type]
        except InvalidInputError as exc:
            raise ConfigError(f"KEYTURN_KEY_BACKEND/KEYTURN_PKCS11_URI: {exc.detail}") from None
        return cls(
            home=home,
            database_url=db,
            public_url=public_url,
            master_key_env=env.get("KEYTURN_MASTER_KEY") or None,
            master_key_file=master_key_file,
            public_url_explicit=bool(env.get("KEYTURN_PUBLIC_URL")),
            key_backend=key_backend,
        )

    def with_public_url(self, url: str, *, what: str = "--public-url") -> Settings:
        """These settings with another public URL (checked like KEYTURN_PUBLIC_URL)."""
        return replace(self, public_url=check_public_url(url, what), public_url_explicit=True)

    def serving_at(self, host: str, port: int) -> Settings:
        """The settings of a server bound to ``host:port``: an explicit public URL stays, the
        default one follows the bind address (so a fresh ``keyturn serve --port 9090``
        publishes and signs for port 9090, not 8080)."""
        if self.public_url_explicit:
            return self
        return replace(self, public_url=url_for_bind(host, port))

    def master_keys(self, *, create: bool = False) -> list[MasterKey]:
        return load_master_keys(self.master_key_env, self.master_key_file, create=create)

    def issuer_for(self, tenant: str) -> str:
        """The default tenant is the root issuer; others live under /t/{name}."""
        return tenant_base_url(self.public_url, tenant, self.default_tenant)
