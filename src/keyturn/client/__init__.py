"""keyturn's client side: keep a token pair fresh for httpx (lean install, like the verifier).

.. code-block:: python

    import httpx
    from keyturn.client import RefreshingAuth, TokenPair

    auth = RefreshingAuth(
        TokenPair(access_token, refresh_token),
        token_url="https://id.example.com/oauth/token",
        client_id="ktc_...",
    )
    with httpx.Client(auth=auth) as http:
        http.get("https://api.example.com/orders")  # a 401 try_refresh is absorbed

Needs only httpx and orjson: it imports nothing from keyturn's server or store.
"""

from keyturn.client._auth import (
    DEFAULT_REFRESH_LEEWAY,
    DEFAULT_WAIT_TIMEOUT,
    RefreshingAuth,
    refresh_hint,
)
from keyturn.client._tokens import RefreshError, TokenPair

__all__ = [
    "DEFAULT_REFRESH_LEEWAY",
    "DEFAULT_WAIT_TIMEOUT",
    "RefreshError",
    "RefreshingAuth",
    "TokenPair",
    "refresh_hint",
]
