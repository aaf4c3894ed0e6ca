"""Exit codes of every ``keyturn`` command: stable, documented in the README."""

from __future__ import annotations

from keyturn import errors as E

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNSAFE_POLICY = 5
EXIT_INVALID_INPUT = 6
EXIT_TOKEN_INVALID = 7
EXIT_STORE_UNAVAILABLE = 8
EXIT_CONFIG = 9
EXIT_DRILL_FAILED = 20  # `keyturn drill` ran and failed (diagnose's verdicts use 10-19)
EXIT_KEY_BACKEND = 21  # a PKCS#11 token absent, its PIN refused, a key's object missing

_EXIT_BY_ERROR: list[tuple[type[E.KeyturnError], int]] = [
    (E.NotFoundError, EXIT_NOT_FOUND),
    (E.ConflictError, EXIT_CONFLICT),
    (E.UnsafePolicyError, EXIT_UNSAFE_POLICY),
    (E.TokenError, EXIT_TOKEN_INVALID),
    (E.InvalidInputError, EXIT_INVALID_INPUT),
    (E.StoreUnavailableError, EXIT_STORE_UNAVAILABLE),
    (E.KeyBackendError, EXIT_KEY_BACKEND),
    (E.ConfigError, EXIT_CONFIG),
]


def exit_code_for(exc: E.KeyturnError) -> int:
    for cls, code in _EXIT_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR
