"""Building a key set from a JWKS: tolerant of real-world sets, never trusting an ambiguous kid."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg
from keyturn.tokens.keyset import MAX_JWKS_KEYS, KeySet
from tests.keys.material import jwk_of, keyset_of


def test_behaves_as_a_mapping_of_kids() -> None:
    a, b = jwk_of(Alg.ES256), jwk_of(Alg.EdDSA)
    ks = keyset_of(a, b)
    assert set(ks) == {a["kid"], b["kid"]}
    assert len(ks) == 2
    assert a["kid"] in ks
    assert a["kid"] in ks.keys
    assert ks[a["kid"]].algs == {Alg.ES256}
    # Regression: the ``keys`` field shadowed Mapping.keys(), so these raised TypeError.
    assert set(ks.keys()) == {a["kid"], b["kid"]}
    assert dict(ks) == dict(ks.keys)
    assert {**ks} == dict(ks.keys)


def test_from_bytes() -> None:
    jwk = jwk_of(Alg.ES256)
    assert jwk["kid"] in KeySet.from_jwks(orjson.dumps({"keys": [jwk]}))


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param({"keys": {}}, id="keys-not-list"),
        pytest.param({}, id="no-keys"),
        pytest.param({"keys": [{}] * (MAX_JWKS_KEYS + 1)}, id="too-many"),
    ],
)
def test_not_a_jwks(doc: Any) -> None:
    with pytest.raises(InvalidInputError):
        KeySet.from_jwks(doc)


@pytest.mark.parametrize("copies", [2, 3, 4])
def test_duplicate_kid_ignores_every_entry(copies: int) -> None:
    kid = "shared"
    entries = [jwk_of(Alg.ES256, slot=i) | {"kid": kid} for i in range(copies)]
    ks = keyset_of(*entries, jwk_of(Alg.EdDSA))
    assert kid not in ks
    assert len(ks) == 1
    assert [s.kid for s in ks.skipped] == [kid] * (copies - 1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"use": "enc"}, "use", id="use-enc"),
        pytest.param({"key_ops": ["encrypt"]}, "key_ops", id="key-ops"),
        pytest.param({"kty": "oct", "k": "AAAA"}, "key type", id="symmetric"),
        pytest.param({"alg": "HS256"}, "algorithm", id="hmac-alg"),
        pytest.param({"alg": "ES384"}, "needs", id="curve-mismatch"),
        pytest.param({"alg": "RS256"}, "does not match kty", id="kty-mismatch"),
        pytest.param({"x": "AAAA"}, "", id="bad-point"),
    ],
)
def test_unusable_entries_are_skipped_not_fatal(change: dict[str, Any], reason: str) -> None:
    good = jwk_of(Alg.EdDSA)
    bad = jwk_of(Alg.ES256) | change
    ks = keyset_of(good, bad, "not an object")  # type: ignore[arg-type]
    assert list(ks) == [good["kid"]]
    assert ks.skipped[0].kid == bad["kid"]
    assert reason in ks.skipped[0].reason
    assert ks.skipped[1].reason == "entry is not an object"


def test_weak_rsa_key_skipped() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from keyturn.keys.jwk import public_jwk

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    ks = keyset_of(public_jwk(weak, Alg.RS256))
    assert len(ks) == 0
    assert "1024" in ks.skipped[0].reason


def test_entry_without_alg_admits_every_algorithm_of_its_type() -> None:
    rsa_jwk = {k: v for k, v in jwk_of(Alg.RS256).items() if k != "alg"}
    ks = keyset_of(rsa_jwk)
    assert ks[rsa_jwk["kid"]].algs == {Alg.RS256, Alg.RS384, Alg.RS512, Alg.PS256}


def test_entry_without_kid_is_anonymous() -> None:
    jwk = {k: v for k, v in jwk_of(Alg.ES256).items() if k != "kid"}
    ks = keyset_of(jwk)
    assert len(ks) == 0
    assert len(ks.anonymous) == 1
