"""A Flask service whose routes need a token from a keyturn issuer (see docs/verifier.md).

Run: ``KEYTURN_ISSUER=http://127.0.0.1:8080 python examples/flask_app.py``
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from keyturn.verifier import Verifier
from keyturn.verifier.wsgi import BearerAuthMiddleware, get_claims


def create_app(verifier: Verifier | None = None) -> Flask:
    """The app; pass a verifier to test it, otherwise one is built from the environment."""
    if verifier is None:
        # Revocation is on by default: the feed keyturn's discovery advertises is polled every
        # 10 s, and a revocation fetches the new keys at once. For pushes within a second, add
        # revocations=RevocationFeed() (the stream); revocations=None turns it off.
        verifier = Verifier(
            issuer=os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8080"),
            algorithms=["ES256", "RS256", "EdDSA"],
            audience=os.environ.get("API_AUDIENCE"),
        )
    app = Flask(__name__)
    app.wsgi_app = BearerAuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, verifier=verifier, exclude=["/healthz"]
    )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    def me() -> dict[str, Any]:
        claims = get_claims(request.environ)
        return {"sub": claims["sub"]}

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=8000)
