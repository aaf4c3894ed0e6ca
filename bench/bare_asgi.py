"""The framework floor for the JWKS benchmark: a bare ASGI callable serving constant bytes.

Run by ``bench/web.py`` under the same uvicorn settings as ``keyturn serve`` (httptools, uvloop,
no access log, one worker pinned to one core), so keyturn's own cost on the hot path is the gap
between the two, and the rest of the gap to nginx is the server's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvicorn


def main() -> None:
    body = Path(sys.argv[1]).read_bytes()
    port = int(sys.argv[2])
    headers = [
        (b"content-type", b"application/jwk-set+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"public, max-age=600"),
    ]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(start)
        await send(message)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
