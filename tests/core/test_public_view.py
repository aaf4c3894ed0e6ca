"""KeyRecord.public_view: has_private_key says whether sealed material is held, literally."""

from __future__ import annotations

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyRecord, KeyState


def _rec(state: KeyState, sealed: bytes | None) -> KeyRecord:
    return KeyRecord(
        kid="k1",
        alg=Alg.EdDSA,
        state=state,
        public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k1"},
        created_at=1000.0,
        sealed_private=sealed,
        master_key_id="mk1" if sealed else None,
    )


def test_has_private_key_follows_the_sealed_material() -> None:
    held = _rec(KeyState.CURRENT, b"sealed-secret-bytes").public_view()
    gone = _rec(KeyState.RETIRED, None).public_view()
    assert held["has_private_key"] is True
    assert gone["has_private_key"] is False
    assert "sealed-secret-bytes" not in repr(held)
    assert "sealed_private" not in held and "master_key_id" not in held


def test_a_token_key_shows_where_it_lives_a_software_key_does_not() -> None:
    rec = KeyRecord(
        kid="k2",
        alg=Alg.ES256,
        state=KeyState.CURRENT,
        public_jwk={"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB", "kid": "k2"},
        created_at=1000.0,
        token_object_id="0a1b2c",
        token_label="keyturn-default",
    )
    view = rec.public_view()
    assert view["token"] == {"object_id": "0a1b2c", "label": "keyturn-default"}
    assert view["has_private_key"] is True  # held by the token, not sealed here
    assert "token" not in _rec(KeyState.CURRENT, b"sealed").public_view()
