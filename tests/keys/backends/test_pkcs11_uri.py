"""RFC 7512 token URIs: what names a token is accepted, a PIN value never."""

from __future__ import annotations

import pytest

from keyturn import errors as E
from keyturn.keys.backends import BackendSpec
from keyturn.keys.backends.pkcs11_uri import parse_pkcs11_uri


def test_parse_token_uri() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Token;serial=abc;slot-id=3"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"
    )
    assert uri.token == "My Token" and uri.serial == "abc" and uri.slot_id == 3
    assert uri.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert uri.pin_source == "file:/run/pin"
    assert uri.selector == "token=My Token;serial=abc;slot-id=3"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        pytest.param("pkcs11:token=a?pin-value=1234", "pin-value", id="pin-value"),
        pytest.param("token=a", "starts with 'pkcs11:'", id="scheme"),
        pytest.param("pkcs11:token=a;object=k", "object", id="object-attr"),
        pytest.param("pkcs11:token=a;token=b", "repeats", id="repeat"),
        pytest.param("pkcs11:slot-id=x", "decimal", id="slot-id"),
        pytest.param("pkcs11:token", "no value", id="no-value"),
        pytest.param("pkcs11:token=a?pin-source=https://x", "pin-source", id="pin-source"),
        pytest.param("pkcs11:token=%ff", "percent", id="bad-escape"),
        pytest.param("pkcs11:token=" + "a" * 1100, "longer than 1024", id="too-long"),
    ],
)
def test_bad_uris_are_refused_with_the_reason(uri: str, message: str) -> None:
    with pytest.raises(E.InvalidInputError, match=message):
        parse_pkcs11_uri(uri)


def test_backend_spec_rules() -> None:
    assert BackendSpec().kind == "software"
    with pytest.raises(E.InvalidInputError, match="needs a URI"):
        BackendSpec("pkcs11")  # type: ignore[arg-type]
    with pytest.raises(E.InvalidInputError, match="unknown key backend 'kms'"):
        BackendSpec("kms")  # type: ignore[arg-type]
    with pytest.raises(E.InvalidInputError, match="takes no URI"):
        BackendSpec("software", "pkcs11:token=a")  # type: ignore[arg-type]
