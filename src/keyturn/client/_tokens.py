"""The token pair a client holds, and the parsing of a token endpoint's answer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_TOKEN_LENGTH = 16 * 1024


class RefreshError(Exception):
    """A refresh did not produce new tokens. ``error`` is the RFC 6749 code, if any.

    ``final`` is True when the session is over (``invalid_grant``: revoked, expired or
    reused): retrying cannot help, the user must sign in again.
    """

    def __init__(self, message: str, *, error: str | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.final = final


@dataclass(frozen=True)
class TokenPair:
    """An access token, the refresh token that renews it, and when the access token expires
    (epoch seconds by the client's clock; None if the server did not say)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        for name in ("access_token", "refresh_token"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_TOKEN_LENGTH:
                raise ValueError(f"{name} must be a non-empty string")

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, now: float, previous_refresh: str | None = None
    ) -> TokenPair:
        """From an RFC 6749 section 5.1 body, e.g. keyturn's ``POST .../sessions`` answer.

        A response without a refresh token keeps ``previous_refresh`` (section 6 allows it).
        """
        access = body.get("access_token")
        kind = body.get("token_type", "Bearer")
        if not isinstance(access, str) or not access:
            raise RefreshError("the token response has no access_token")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise RefreshError("the token response is not a Bearer token")
        refresh = body.get("refresh_token", previous_refresh)
        if not isinstance(refresh, str) or not refresh:
            raise RefreshError("the token response has no refresh_token")
        expires_in = body.get("expires_in")
        expires_at = None
        if expires_in is not None:
            if (
                isinstance(expires_in, bool)
                or not isinstance(expires_in, int | float)
                or not math.isfinite(expires_in)
                or expires_in < 0
            ):
                raise RefreshError("the token response has an invalid expires_in")
            expires_at = now + float(expires_in)
        try:
            return cls(access, refresh, expires_at)
        except ValueError as exc:
            raise RefreshError(str(exc)) from None
