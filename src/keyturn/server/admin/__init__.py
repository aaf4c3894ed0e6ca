"""The operators' console under ``/admin``: server-rendered pages over the management roles.

Security choices, in one place:

- Sign-in is a POST form carrying the API key (never a URL, which proxies and histories log).
  The key is checked by :meth:`ApiKeyStore.authenticate` (constant-time, one message for every
  failure), then forgotten: the session cookie holds ``key id + expiry + nonce``, HMAC-signed
  (:mod:`.session`), never the API key. Every request re-reads the API key row, so a revoked
  key loses its session at once and a changed role or tenant applies at once.
- Cookies are HttpOnly, ``SameSite=Strict``, ``Path=/admin``, Secure on https, one hour.
- State-changing forms carry a per-session CSRF token (an HMAC of the session), the sign-in
  form a token bound to a pre-login cookie (no login CSRF); a browser's ``Sec-Fetch-Site`` of
  another site is refused outright.
- Pages are Jinja2 templates with autoescape on every template, SVG included
  (:mod:`.templating`); no script at all, CSS from a static file, and a strict CSP plus
  framing, referrer and cache headers on every response (:mod:`.security`).
- Rights are the API's (:data:`keyturn.server.auth.RIGHTS`), checked before a tenant is looked
  up; every action runs as the signed-in key (``api:<key id>`` in the audit log).
- Actions redirect after POST (a reload cannot repeat them) and name the key they act on:
  a stale page cannot rotate twice or revoke a key it did not show as current.

Layout: :mod:`.app` assembles the route units of :mod:`.routes` (sign-in, tenants, keys,
policy, API keys, audit) on an :class:`~.context.AdminContext`; :mod:`.timeline` draws the key
ring over time; :mod:`.reads` is the one module that still reads the store directly.
"""

from keyturn.server.admin.app import build_admin
from keyturn.server.admin.security import SECURITY_HEADERS, SecurityHeaders
from keyturn.server.admin.session import SESSION_TTL, Flash, Signer, Viewer

__all__ = [
    "SECURITY_HEADERS",
    "SESSION_TTL",
    "Flash",
    "SecurityHeaders",
    "Signer",
    "Viewer",
    "build_admin",
]
