"""The drill's verdict on one verifier, from recorded answers (no HTTP)."""

from __future__ import annotations

import time

from keyturn.drill.run import Record, _judge


class _Probe:
    def __init__(self, *, keyturn: bool = True, promise: float | None = 1.0) -> None:
        self.name = "probe"
        self.keyturn = keyturn
        self.promise = promise

    def verify(self, token: str) -> str | None:
        return None

    def fetches(self) -> int:
        return 2

    def close(self) -> None:
        return None


BASE = time.monotonic() - 10.0  # records carry monotonic times; "10.0" below is BASE + 10 s


def _rec(
    at: float, kid: str, code: str | None, *, old: bool = False, expired: bool = False
) -> Record:
    # exp is wall time: an hour after the answer, or a minute before it when ``expired``.
    wall = BASE + at + (time.time() - time.monotonic())
    exp = wall - 60 if expired else wall + 3600
    return Record(at=BASE + at, kid=kid, exp=exp, old=old, code=code)


def test_a_rejected_token_of_a_kept_key_is_a_valid_token_rejected() -> None:
    records = [_rec(10.0, "new", None), _rec(10.1, "new", "unknown_kid"), _rec(10.2, "new", None)]
    result = _judge(_Probe(), records, frozenset({"old"}), BASE + 9.0)
    assert result.valid_rejected == 1
    assert result.passed is False
    assert "1 valid tokens rejected" in result.why


def test_the_drop_is_the_first_refusal_after_the_last_acceptance() -> None:
    records = [
        _rec(9.5, "old", None, old=True),  # before the action: not judged
        _rec(10.2, "old", None, old=True),
        _rec(10.4, "old", "revoked_kid", old=True),
        _rec(10.5, "old", None, old=True),  # accepted again: the refusal above did not count
        _rec(10.7, "old", "revoked_kid", old=True),
        _rec(10.9, "old", "revoked_kid", old=True),
    ]
    result = _judge(_Probe(promise=1.0), records, frozenset({"old"}), BASE + 10.0)
    assert result.old_rejected_after == 0.7
    assert result.passed is True


def test_late_or_never_is_a_failure_for_keyturn_and_information_otherwise() -> None:
    records = [_rec(10.0 + i, "old", None, old=True) for i in range(3)]
    late = _judge(_Probe(promise=1.0), records, frozenset({"old"}), BASE + 10.0)
    assert late.old_rejected_after is None and late.passed is False
    assert "kept accepting" in late.why
    naive = _judge(_Probe(keyturn=False, promise=None), records, frozenset({"old"}), BASE + 10.0)
    assert naive.passed is True and "not judged" in naive.why


def test_expired_tokens_prove_nothing() -> None:
    records = [
        _rec(10.1, "new", "expired", expired=True),
        _rec(10.2, "old", "expired", expired=True),
    ]
    result = _judge(_Probe(), records, frozenset({"old"}), BASE + 10.0)
    assert result.valid_rejected == 0
    assert result.old_rejected_after is None
