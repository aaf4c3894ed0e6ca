"""Sessions: OAuth clients, refresh-token families rotated on every use, and their policy.

The domain (:mod:`model`, :mod:`rotation`) is plain values and pure functions with time passed
in; :mod:`service` runs each operation as one audited database transaction; the HTTP token and
revocation endpoints live in :mod:`keyturn.server.oauth`, the management API in
:mod:`keyturn.server.sessions_api`.
"""
