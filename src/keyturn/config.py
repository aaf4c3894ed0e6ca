"""Settings, built once in the entry point from the environment and passed down (never global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keyturn.errors import ConfigError
from keyturn.jwks_http import tenant_base_url
from keyturn.keys.sealing import MasterKey, load_master_keys


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = default_home(env)
        db = env.get("KEYTURN_DATABASE_URL") or f"sqlite:///{home / 'keyturn.db'}"
        if db.startswith("postgres://"):
            db = "postgresql+psycopg://" + db[len("postgres://") :]
        elif db.startswith("postgresql://"):
            db = "postgresql+psycopg://" + db[len("postgresql://") :]
        public_url = (env.get("KEYTURN_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"KEYTURN_PUBLIC_URL must be an http(s) URL, got {public_url!r}")
        mk_file = env.get("KEYTURN_MASTER_KEY_FILE")
        master_key_file = Path(mk_file).expanduser() if mk_file else home / "master.key"
        return cls(
            home=home,
            database_url=db,
            public_url=public_url,
            master_key_env=env.get("KEYTURN_MASTER_KEY") or None,
            master_key_file=master_key_file,
        )

    def master_keys(self, *, create: bool = False) -> list[MasterKey]:
        return load_master_keys(self.master_key_env, self.master_key_file, create=create)

    def issuer_for(self, tenant: str) -> str:
        """The default tenant is the root issuer; others live under /t/{name}."""
        return tenant_base_url(self.public_url, tenant, self.default_tenant)
