"""A FastAPI service whose routes need a token from a keyturn issuer (see docs/verifier.md).

Run: ``KEYTURN_ISSUER=http://127.0.0.1:8080 python examples/fastapi_app.py``
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from keyturn.verifier import AsyncVerifier
from keyturn.verifier.asgi import BearerAuthMiddleware, claims_dependency

Claims = Annotated[dict[str, Any], Depends(claims_dependency())]


def create_app(verifier: AsyncVerifier | None = None) -> FastAPI:
    """The app; pass a verifier to test it, otherwise one is built from the environment."""
    if verifier is None:
        # Revocation is on by default: the feed keyturn's discovery advertises is polled every
        # 10 s, and a revocation fetches the new keys at once. For pushes within a second, add
        # revocations=RevocationFeed() (the stream); revocations=None turns it off.
        verifier = AsyncVerifier(
            issuer=os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8080"),
            algorithms=["ES256", "RS256", "EdDSA"],
            audience=os.environ.get("API_AUDIENCE"),
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await verifier.aclose()  # stops background refresh and the revocation feed

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, exclude=["/healthz"])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(claims: Claims) -> dict[str, Any]:
        return {"sub": claims["sub"]}

    @app.get("/orders")
    async def orders(request: Request) -> dict[str, Any]:
        # The same claims, straight from request.state.
        return {"owner": request.state.keyturn_claims["sub"], "orders": []}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
