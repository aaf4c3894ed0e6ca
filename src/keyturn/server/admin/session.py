"""Sessions, CSRF and forms of the admin console: signed cookies, never the API key.

The session cookie holds ``key id + expiry + nonce``, HMAC-signed; the API key itself is
checked once at sign-in and forgotten. CSRF tokens are HMACs of the session nonce; the sign-in
form carries a token bound to a pre-login cookie (no login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request

from keyturn.server.auth import Principal, Right
from keyturn.store.apikeys import ApiKey

SESSION_COOKIE = "kt_admin"
LOGIN_COOKIE = "kt_admin_login"
FLASH_COOKIE = "kt_admin_flash"
SESSION_TTL = 3600  # seconds; fixed, not sliding: a stolen cookie dies within the hour
LOGIN_TTL = 900  # the sign-in form's anti-CSRF cookie
FLASH_TTL = 60  # the result of an action, shown once after the redirect
MAX_FORM_FIELDS = 16
MAX_UPLOAD_BYTES = 60 * 1024  # under the server's 64 KiB body limit; key files are a few KiB
MAX_FIELD_CHARS = 2000


class Refused(Exception):
    """A request the admin refuses with a page (status, title, message)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """What the session cookie proves: an API key id and when the session ends."""

    key_id: str
    expires: int
    nonce: str


class Signer:
    """HMAC-SHA256 over cookie payloads and form tokens with one key.

    The key is random per process unless given (``create_app`` derives it from the master
    key, so every worker and replica accepts the same sessions).
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        if len(self._key) < 32:
            raise ValueError("the session key must be at least 32 bytes")

    def mac(self, purpose: str, payload: str) -> str:
        msg = purpose.encode() + b"\x00" + payload.encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def check(self, purpose: str, payload: str, mac: str) -> bool:
        return hmac.compare_digest(
            self.mac(purpose, payload).encode(), mac.encode("utf-8", "replace")
        )

    # sessions
    def issue(self, key_id: str, now: float) -> tuple[str, Session]:
        sess = Session(key_id, int(now) + SESSION_TTL, secrets.token_hex(16))
        payload = f"v1.{sess.key_id}.{sess.expires}.{sess.nonce}"
        return f"{payload}.{self.mac('session', payload)}", sess

    def open(self, value: str, now: float) -> Session | None:
        if len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != "v1":
            return None
        payload = ".".join(parts[:4])
        if not self.check("session", payload, parts[4]):
            return None
        try:
            expires = int(parts[2])
        except ValueError:
            return None
        if expires <= now:
            return None
        return Session(parts[1], expires, parts[3])

    def csrf(self, sess: Session) -> str:
        return self.mac("csrf", sess.nonce)

    # the sign-in form
    def login_token(self, nonce: str) -> str:
        return self.mac("login", nonce)

    # one-shot results of an action, bound to the session and the page they are shown on
    def flash(self, sess: Session, scope: str, data: dict[str, Any], now: float) -> str:
        body = _b64(orjson.dumps({**data, "t": scope, "exp": int(now) + FLASH_TTL}))
        return f"{body}.{self.mac('flash', sess.nonce + '.' + body)}"

    def open_flash(
        self, sess: Session, scope: str, value: str, now: float
    ) -> dict[str, Any] | None:
        body, _, mac = value.partition(".")
        if not mac or not self.check("flash", sess.nonce + "." + body, mac):
            return None
        try:
            data = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("t") != scope or data.get("exp", 0) <= now:
            return None
        return data


@dataclass(frozen=True)
class Viewer:
    """The signed-in operator as the pages show them."""

    key: ApiKey
    csrf: str
    expires: float

    @property
    def principal(self) -> Principal:
        return Principal(self.key)

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin

    def can(self, right: Right, tenant: str | None) -> bool:
        return self.principal.can(right, tenant)


@dataclass
class Flash:
    """The result of the last action, shown once."""

    ok: bool
    message: str
    warnings: list[str] = field(default_factory=list)

    @property
    def css(self) -> str:
        if not self.ok:
            return "error"
        return "warn" if self.warnings else "ok"


def trim_flash(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the flash cookie well under the 4 KB browsers allow."""
    msg = str(data.get("msg", ""))[:600]
    warnings = [str(w)[:600] for w in data.get("w", [])][:4]
    return {**data, "msg": msg, "w": warnings}


def _same_site(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused(403, "Refused", "Cross-site form submissions are refused.")


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    """A same-site urlencoded form; the first value of a field wins (none smuggled twice)."""
    _same_site(request)
    if _content_type(request) != "application/x-www-form-urlencoded":
        raise Refused(415, "Unsupported form", "Send the form from the admin page.")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise Refused(422, "Invalid form", "The form could not be read.") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        form.setdefault(k, v[:MAX_FIELD_CHARS])
    return form


@dataclass(frozen=True)
class Upload:
    """A same-site multipart form with at most one file."""

    fields: dict[str, str]
    filename: str
    data: bytes


async def read_upload(request: Request, file_field: str) -> Upload:
    _same_site(request)
    if _content_type(request) != "multipart/form-data":
        raise Refused(415, "Unsupported form", "Send the form from the admin page.")
    try:
        form = await request.form(
            max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_UPLOAD_BYTES
        )
    except Exception:  # multipart's parse errors carry no secret; one page for all of them
        raise Refused(422, "Invalid form", "The upload could not be read.") from None
    try:
        fields: dict[str, str] = {}
        upload: UploadFile | None = None
        for k, v in form.multi_items():
            if isinstance(v, str):
                fields.setdefault(k, v[:MAX_FIELD_CHARS])
            elif k == file_field and upload is None:
                upload = v
        if upload is None:
            return Upload(fields, "", b"")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused(413, "File too large", f"Key files are at most {MAX_UPLOAD_BYTES} bytes.")
        return Upload(fields, upload.filename or "", data)
    finally:
        await form.close()


def check_csrf(signer: Signer, sess: Session, form: dict[str, str]) -> None:
    token = form.get("csrf", "")
    if not hmac.compare_digest(signer.csrf(sess).encode(), token.encode("utf-8", "replace")):
        raise Refused(
            403, "Form expired", "The form was not issued by this session; reload and retry."
        )
