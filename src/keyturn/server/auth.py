"""Bearer API keys and roles: who may do what to which tenant.

Rights per role (``admin`` has every right on every tenant and the global ones):

========  ====  ======  ====  ======
role      read  verify  sign  manage
========  ====  ======  ====  ======
manager   yes   yes     no    yes
signer    no    yes     yes   no
viewer    yes   yes     no    no
========  ====  ======  ====  ======

A scoped key is checked against the tenant named in the request *before* that tenant is
looked up, so the management API tells a key of tenant A nothing about tenant B, not even
whether it exists. (Tenants are not secret as such: the public JWKS answers 200 or 404 for any
name, and /metrics labels series by tenant unless --metrics-token guards it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keyturn.errors import AuthError, ForbiddenError
from keyturn.store.apikeys import ApiKey, ApiKeyStore, Role

REALM = 'Bearer realm="keyturn"'


class Right(StrEnum):
    READ = "read"  # tenant, keys, plan, audit of the tenant
    VERIFY = "verify"  # verify a token against the tenant's keys
    SIGN = "sign"  # sign tokens
    MANAGE = "manage"  # policy, rotate, revoke, import
    GLOBAL = "global"  # create tenants, global audit: admin only


RIGHTS: dict[Role, frozenset[Right]] = {
    Role.ADMIN: frozenset(Right),
    Role.MANAGER: frozenset({Right.READ, Right.VERIFY, Right.MANAGE}),
    Role.SIGNER: frozenset({Right.VERIFY, Right.SIGN}),
    Role.VIEWER: frozenset({Right.READ, Right.VERIFY}),
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    key: ApiKey

    @property
    def actor(self) -> str:
        """Audit actor: the key id, never the secret."""
        return f"api:{self.key.key_id}"

    @property
    def is_admin(self) -> bool:
        return self.key.role == Role.ADMIN

    def can(self, right: Right, tenant: str | None) -> bool:
        if right not in RIGHTS[self.key.role]:
            return False
        if self.is_admin:
            return True
        return tenant is not None and tenant == self.key.tenant

    def require(self, right: Right, tenant: str | None = None) -> None:
        if not self.can(right, tenant):
            where = f" on tenant {tenant!r}" if tenant is not None else ""
            raise ForbiddenError(
                f"this API key ({self.key.role.value}) may not {right.value}{where}"
            )


def authenticate(keys: ApiKeyStore, authorization: str | None) -> Principal:
    """The caller behind an ``Authorization: Bearer kt_...`` header; AuthError otherwise."""
    if not authorization:
        raise AuthError("an API key is required: Authorization: Bearer kt_...")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("use the Bearer scheme: Authorization: Bearer kt_...")
    key = keys.authenticate(token.strip())
    if key is None:
        # One message for unknown, malformed, wrong-secret and revoked keys alike.
        raise AuthError("invalid or revoked API key")
    return Principal(key)
