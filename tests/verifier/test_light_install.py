"""keyturn.verifier works in a clean venv with only its own dependencies (no server extras)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import sys
    import time

    import httpx

    import keyturn.verifier
    import keyturn.verifier.asgi
    import keyturn.verifier.prometheus
    import keyturn.verifier.wsgi
    from keyturn.keys import Alg, generate_private_key, public_jwk, thumbprint
    from keyturn.tokens import TokenSigner
    from keyturn.verifier import CacheOptions, Verifier

    key = generate_private_key(Alg.ES256)
    kid = thumbprint(key)
    jwks = {"keys": [public_jwk(key, Alg.ES256, kid)]}
    token = TokenSigner(key, Alg.ES256, kid).sign(
        {"iss": "https://issuer.test", "sub": "light", "exp": int(time.time()) + 60}
    )
    with Verifier(
        issuer="https://issuer.test",
        jwks_url="https://issuer.test/jwks.json",
        algorithms=["ES256"],
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=jwks)),
        cache=CacheOptions(background=False),
    ) as verifier:
        assert verifier.verify(token)["sub"] == "light"

    # keyturn.client, the other half of the lean install: refresh and retry over httpx only.
    from keyturn.client import RefreshingAuth, TokenPair

    def api(request):
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "new", "refresh_token": "r2"})
        if request.headers["authorization"] == "Bearer new":
            return httpx.Response(200)
        return httpx.Response(401, headers={"www-authenticate": 'Bearer error="invalid_token"'})

    auth = RefreshingAuth(
        TokenPair("old", "r1"), token_url="https://issuer.test/oauth/token", client_id="c"
    )
    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as http:
        assert http.get("https://api.test/x").status_code == 200

    heavy = ("sqlalchemy", "starlette", "fastapi", "prometheus_client", "alembic", "uvicorn")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    assert not loaded, loaded
    installed = [m for m in heavy if importlib.util.find_spec(m) is not None]
    assert not installed, installed
    from keyturn.verifier.prometheus import register
    try:
        register(verifier)
    except ModuleNotFoundError as exc:
        assert "pip install 'keyturn[prometheus]'" in str(exc), exc
    else:
        raise AssertionError("register without prometheus_client did not fail")
    print("LIGHT-OK")
    """
)


@pytest.mark.slow
def test_verifier_in_a_clean_venv(tmp_path: Path) -> None:
    # The wheel the README tells people to install: built by scripts/build-wheel (from a copy,
    # so the build never writes into the shared working tree).
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-wheel"), str(wheels)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("keyturn-*-py3-none-any.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=240,
    )
    result = subprocess.run(
        [str(python), "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "LIGHT-OK" in result.stdout
