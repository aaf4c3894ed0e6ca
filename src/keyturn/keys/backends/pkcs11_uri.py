"""RFC 7512 PKCS#11 URIs naming the token a tenant's keys live in (no I/O, no PIN values).

``pkcs11:token=keyturn;serial=...?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin``

Only what names a token is accepted: object attributes (``object``, ``id``, ``type``) would mean
nothing for a tenant whose keys keyturn creates, and ``pin-value`` is refused outright because
the URI is stored on the tenant's row and the PIN must never be.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from keyturn.errors import InvalidInputError
from keyturn.keys.backends.base import MAX_BACKEND_URI

TOKEN_ATTRS = frozenset({"token", "manufacturer", "serial", "model", "slot-id"})
QUERY_ATTRS = frozenset({"module-path", "pin-source"})
_SCHEME = "pkcs11:"


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed token URI: what selects the token, which module, where the PIN comes from."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    slot_id: int | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @property
    def selector(self) -> str:
        """A short description of the token for error messages (never a PIN)."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("token", self.token),
                ("serial", self.serial),
                ("manufacturer", self.manufacturer),
                ("model", self.model),
                ("slot-id", self.slot_id),
            )
            if value is not None
        ]
        return ";".join(parts) or "(any token)"


def _pairs(text: str, sep: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(sep):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise InvalidInputError(f"PKCS#11 URI {where} attribute {name!r} has no value")
        name = name.strip().lower()
        if name in out:
            raise InvalidInputError(f"PKCS#11 URI repeats the attribute {name!r}")
        out[name] = unquote(value, errors="strict")
    return out


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse and check a token URI; the error names the offending attribute."""
    if len(uri) > MAX_BACKEND_URI:
        raise InvalidInputError(f"PKCS#11 URI longer than {MAX_BACKEND_URI} characters")
    if not uri.lower().startswith(_SCHEME):
        raise InvalidInputError("a PKCS#11 URI starts with 'pkcs11:' (RFC 7512)")
    path, _, query = uri[len(_SCHEME) :].partition("?")
    try:
        attrs = _pairs(path, ";", "path")
        params = _pairs(query, "&", "query")
    except UnicodeDecodeError:
        raise InvalidInputError("PKCS#11 URI has a malformed percent-encoding") from None
    if "pin-value" in params:
        raise InvalidInputError(
            "PKCS#11 URI carries pin-value: the URI is stored with the tenant and the PIN must "
            "never be; use pin-source=file:/path, pin-source=env:NAME or KEYTURN_PKCS11_PIN"
        )
    unknown = (set(attrs) - TOKEN_ATTRS) | (set(params) - QUERY_ATTRS)
    if unknown:
        raise InvalidInputError(
            f"PKCS#11 URI attributes not supported here: {', '.join(sorted(unknown))} "
            f"(a tenant URI names a token: {', '.join(sorted(TOKEN_ATTRS))}; "
            f"query: {', '.join(sorted(QUERY_ATTRS))})"
        )
    slot_id: int | None = None
    if "slot-id" in attrs:
        if not attrs["slot-id"].isdigit():
            raise InvalidInputError("PKCS#11 URI slot-id must be a decimal number")
        slot_id = int(attrs["slot-id"])
    pin_source = params.get("pin-source")
    if pin_source is not None and not pin_source.startswith(("file:", "env:", "/")):
        raise InvalidInputError(
            "PKCS#11 URI pin-source must be file:/absolute/path, /absolute/path or env:NAME"
        )
    return Pkcs11Uri(
        token=attrs.get("token"),
        manufacturer=attrs.get("manufacturer"),
        serial=attrs.get("serial"),
        model=attrs.get("model"),
        slot_id=slot_id,
        module_path=params.get("module-path"),
        pin_source=pin_source,
    )
