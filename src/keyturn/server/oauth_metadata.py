"""What discovery (RFC 8414, OpenID Discovery) says about keyturn's OAuth endpoints.

Its own module so the document renderer can import it without the endpoint itself.
"""

from __future__ import annotations

from typing import Any

from keyturn.sessions.model import AUTH_METHODS, GRANT_TYPES


def discovery_fields(base: str) -> dict[str, Any]:
    """The token and revocation endpoints under ``base``, with what they accept."""
    return {
        "token_endpoint": f"{base}/oauth/token",
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint": f"{base}/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
    }
