"""Strict base64url: one spelling per byte string, nothing else decodes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.keys import b64 as b64_module
from keyturn.keys.b64 import b64url_decode, b64url_encode, b64url_encode_str

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert b"=" not in encoded
    assert b64url_decode(encoded) == data
    assert b64url_decode(b64url_encode_str(data)) == data


@given(st.text(max_size=40))
def test_anything_that_decodes_is_the_one_canonical_spelling(text: str) -> None:
    try:
        decoded = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode_str(decoded) == text


@given(st.text(alphabet=ALPHABET, max_size=40).filter(lambda s: len(s) % 4 != 1))
def test_lenient_decoders_agree_on_every_canonical_input(text: str) -> None:
    try:
        ours = b64url_decode(text)
    except ValueError:
        return  # non-canonical trailing bits: the lenient decoder would accept, we refuse
    assert ours == base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", b"", id="empty"),
        pytest.param("QQ", b"A", id="one-byte"),
        pytest.param("QUI", b"AB", id="two-bytes"),
        pytest.param("QUJD", b"ABC", id="three-bytes"),
        pytest.param("-_8", b"\xfb\xff", id="url-alphabet"),
    ],
)
def test_decodes_canonical(text: str, expected: bytes) -> None:
    assert b64url_decode(text) == expected
    assert b64url_decode(text.encode()) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("QQ==", id="padding"),
        pytest.param("QUI=", id="single-pad"),
        pytest.param("QQ+/", id="standard-alphabet"),
        pytest.param("QU I", id="space"),
        pytest.param("QUJD\n", id="newline"),
        pytest.param("QUJ.", id="dot"),
        pytest.param("QUJDé", id="non-ascii"),
        pytest.param("QR", id="trailing-bits-after-one-byte"),
        pytest.param("QUJ", id="trailing-bits-after-two-bytes"),
        pytest.param("Q", id="length-mod-4-is-1"),
        pytest.param("QUJDR", id="length-mod-4-is-1-long"),
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


# The fast decoder (pybase64) and the portable one must give the same answer for every input,
# including padding, the standard alphabet, whitespace and bytes outside ASCII anywhere.
_NEAR = ALPHABET + "=+/. \n\x00é"


@given(st.one_of(st.text(alphabet=_NEAR, max_size=40), st.binary(max_size=40)))
def test_fast_and_portable_decoders_agree(data: str | bytes) -> None:
    assert b64_module.b64url_decode is b64_module._decode_fast  # pybase64 is a dependency
    results = []
    for decode in (b64_module._decode_fast, b64_module.decode_portable):
        try:
            results.append(("ok", decode(data)))
        except ValueError:
            results.append(("refused", b""))
    assert results[0] == results[1]


@pytest.mark.parametrize("text", ["QUJD=", "QU==QUJD", "QUI=QUJD", "QUJD====", "=QUJ", "Q=UJ"])
def test_padding_anywhere_is_refused(text: str) -> None:
    for decode in (b64_module._decode_fast, b64_module.decode_portable):
        with pytest.raises(ValueError, match="base64url"):
            decode(text)


def test_a_bytearray_argument_is_not_modified() -> None:
    data = bytearray(b"QUI")
    assert b64url_decode(data) == b"AB"  # type: ignore[arg-type]
    assert data == bytearray(b"QUI")


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
@pytest.mark.parametrize("text", [b"", b"QQ", b"QUJD", b"QQ==", b"Q"])
def test_buffer_arguments_decode_like_bytes(wrap: Any, text: bytes) -> None:
    for decode in (b64_module._decode_fast, b64_module.decode_portable):
        try:
            expected: object = decode(text)
        except ValueError:
            expected = ValueError
        try:
            got: object = decode(wrap(text))
        except ValueError:
            got = ValueError
        assert got == expected
