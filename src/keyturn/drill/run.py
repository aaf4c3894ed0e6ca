"""The drill itself: sign and verify under load, act, watch every verifier, judge.

Timeline::

    warm-up: sign, verify with every probe; each probe also meets an unknown kid, so its
             unknown-kid cooldown and negative cache are in use when the emergency comes
    action:  rotate | rotate-and-revoke | revoke-all through the management API, under load
    watch:   until every probe with a promise has refused the revoked key (or the window ends)

Every verification is recorded with its time, the token's kid and the answer, and judged once the
action's outcome is known (which kids it revoked): a rejection of a token whose kid was not
revoked and which has not expired is a *valid token rejected*, the 401 the drill exists to catch.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from keyturn.drill.probes import DEFAULT_KINDS, Probe, Target, make_probes
from keyturn.errors import ConfigError, DrillError, InvalidInputError
from keyturn.verifier import DEFAULT_POLL_INTERVAL

Action = Literal["rotate", "rotate-and-revoke", "revoke-all"]
ACTIONS: tuple[Action, ...] = ("rotate", "rotate-and-revoke", "revoke-all")
AUDIENCE = "keyturn-drill"
SIGN_PAUSE = 0.01  # seconds between signs: ~100 tokens/s at most, a load, not a flood
VERIFY_PAUSE = 0.005
EXPIRY_MARGIN = 1.0  # tokens this close to exp are not judged (an expiry is not a 401 wave)


@dataclass(frozen=True, slots=True)
class DrillConfig:
    """What to rehearse, where, and for how long (seconds)."""

    url: str
    api_key: str
    tenant: str = "default"
    action: Action = "rotate-and-revoke"
    verifiers: tuple[str, ...] = DEFAULT_KINDS
    warmup: float = 2.0
    window: float = 20.0
    settle: float = 3.0
    poll_interval: float = DEFAULT_POLL_INTERVAL
    reason: str = "keyturn drill"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidInputError(f"action must be one of {', '.join(ACTIONS)}")
        for name in ("warmup", "window", "settle", "poll_interval", "timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive")
        if not self.verifiers:
            raise InvalidInputError("name at least one verifier")


@dataclass(frozen=True, slots=True)
class Record:
    at: float
    kid: str
    exp: float
    old: bool  # the pre-action token of the key being replaced
    code: str | None


@dataclass(frozen=True, slots=True)
class VerifierResult:
    """One probe's verdict."""

    name: str
    keyturn: bool
    verifications: int
    valid_rejected: int
    rejections: dict[str, int]
    old_rejected_after: float | None  # seconds after the action returned; None: never
    promise: float | None
    fetches: int
    passed: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keyturn": self.keyturn,
            "verifications": self.verifications,
            "valid_rejected": self.valid_rejected,
            "rejections": self.rejections,
            "old_rejected_after": self.old_rejected_after,
            "promise": self.promise,
            "fetches": self.fetches,
            "passed": self.passed,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class DrillReport:
    """What happened, per verifier, and whether the drill passed."""

    tenant: str
    issuer: str
    action: Action
    old_kid: str
    new_kid: str | None
    revoked: tuple[str, ...]
    action_seconds: float
    signed: int
    sign_errors: dict[str, int]
    verifiers: tuple[VerifierResult, ...]
    passed: bool
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "issuer": self.issuer,
            "action": self.action,
            "old_kid": self.old_kid,
            "new_kid": self.new_kid,
            "revoked": list(self.revoked),
            "action_seconds": round(self.action_seconds, 3),
            "signed": self.signed,
            "sign_errors": self.sign_errors,
            "verifiers": [v.to_dict() for v in self.verifiers],
            "passed": self.passed,
            "duration": round(self.duration, 3),
        }


def _kid_and_exp(token: str) -> tuple[str, float]:
    header, payload, _ = token.split(".")
    h = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    p = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(h.get("kid")), float(p.get("exp", 0))


def _unknown_kid_token(alg: str, issuer: str) -> str:
    """A well-formed token naming a kid nobody published: each probe records a miss for it."""

    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    now = int(time.time())
    header = seg({"alg": alg, "kid": "drill-missing-" + secrets.token_hex(8), "typ": "JWT"})
    body = seg({"iss": issuer, "aud": AUDIENCE, "sub": "drill", "iat": now, "exp": now + 60})
    return f"{header}.{body}.{seg({'x': 0})}"


class _Api:
    """The management API calls the drill makes, with the caller's API key."""

    def __init__(self, cfg: DrillConfig) -> None:
        self.cfg = cfg
        self.client = httpx.Client(
            base_url=cfg.url.rstrip("/"),
            headers={"Authorization": f"Bearer {cfg.api_key}"},
            timeout=cfg.timeout,
            follow_redirects=False,
        )
        self.base = f"/api/v1/tenants/{cfg.tenant}"

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = f"{body.get('code')}: {body.get('detail')}"
            except ValueError:
                detail = response.text[:200]
            raise DrillError(f"{response.request.method} {response.url.path}: {detail}")
        return response.json()

    def tenant(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self.client.get(self.base))
        return result

    def key_list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(
            self.client.get(f"{self.base}/keys", params={"all": "true"})
        )
        return result

    def sign(self) -> str:
        body = {"claims": {"sub": "drill", "aud": AUDIENCE}}
        token: str = self._json(self.client.post(f"{self.base}/tokens/sign", json=body))["token"]
        return token

    def act(self, action: Action, reason: str) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        result: dict[str, Any] = self._json(
            self.client.post(f"{self.base}/keys/{action}", json=body)
        )
        return result

    def discovery(self, issuer: str) -> dict[str, Any]:
        r = httpx.get(
            issuer.rstrip("/") + "/.well-known/openid-configuration",
            timeout=self.cfg.timeout,
            follow_redirects=False,
        )
        if r.status_code != 200:
            raise DrillError(f"discovery of {issuer} answered {r.status_code}")
        doc: dict[str, Any] = r.json()
        return doc

    def close(self) -> None:
        self.client.close()


class _Load:
    """The signer thread and one verifying thread per probe, recording every answer."""

    def __init__(self, api: _Api, probes: Sequence[Probe]) -> None:
        self.api = api
        self.probes = list(probes)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latest: tuple[str, str, float] | None = None  # token, kid, exp
        self.old: tuple[str, str, float] | None = None
        self.signed = 0
        self.sign_errors: Counter[str] = Counter()
        self.records: dict[str, list[Record]] = {p.name: [] for p in self.probes}
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.threads.append(threading.Thread(target=self._sign_loop, daemon=True))
        for probe in self.probes:
            self.threads.append(threading.Thread(target=self._verify_loop, args=(probe,)))
        for t in self.threads:
            t.daemon = True
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _sign_loop(self) -> None:
        while not self.stop.is_set():
            try:
                token = self.api.sign()
            except (DrillError, httpx.HTTPError) as exc:
                with self.lock:
                    self.sign_errors[type(exc).__name__ + ": " + str(exc)[:120]] += 1
            else:
                kid, exp = _kid_and_exp(token)
                with self.lock:
                    self.latest = (token, kid, exp)
                    self.signed += 1
            self.stop.wait(SIGN_PAUSE)

    def _verify_loop(self, probe: Probe) -> None:
        out = self.records[probe.name]
        while not self.stop.is_set():
            with self.lock:
                latest, old = self.latest, self.old
            for item, is_old in ((latest, False), (old, True)):
                if item is None:
                    continue
                token, kid, exp = item
                code = probe.verify(token)
                out.append(Record(time.monotonic(), kid, exp, is_old, code))
            self.stop.wait(VERIFY_PAUSE)


def _judge(
    probe: Probe, records: Sequence[Record], revoked: frozenset[str], t_action: float
) -> VerifierResult:
    wall_offset = time.time() - time.monotonic()
    valid_rejected = 0
    rejections: Counter[str] = Counter()
    revoked_records: list[Record] = []
    for r in records:
        if r.code is not None:
            rejections[r.code] += 1
        if r.at + wall_offset > r.exp - EXPIRY_MARGIN:
            continue  # expired or about to: proves nothing either way
        if r.kid in revoked:
            if r.at >= t_action:
                revoked_records.append(r)
        elif r.code is not None:
            valid_rejected += 1
    # Dropped: the first rejection after the last acceptance of a revoked key's token.
    drop: float | None = None
    if revoked:
        last_ok = max((r.at for r in revoked_records if r.code is None), default=-1.0)
        after = [r.at for r in revoked_records if r.code is not None and r.at > last_ok]
        if after:
            drop = max(after[0] - t_action, 0.0)
    promise = probe.promise
    reasons: list[str] = []
    if probe.keyturn:
        if valid_rejected:
            reasons.append(f"{valid_rejected} valid tokens rejected")
        if revoked and promise is not None:
            if drop is None:
                reasons.append("kept accepting the revoked key's tokens to the end")
            elif drop > promise:
                reasons.append(f"dropped the revoked key after {drop:.2f}s > {promise:g}s")
    if probe.keyturn:
        why = "; ".join(reasons) if reasons else "ok"
    else:
        why = "a cache-only verifier, no revocation feed (not judged)"
    return VerifierResult(
        name=probe.name,
        keyturn=probe.keyturn,
        verifications=len(records),
        valid_rejected=valid_rejected,
        rejections=dict(rejections),
        old_rejected_after=None if drop is None else round(drop, 3),
        promise=promise,
        fetches=probe.fetches(),
        passed=not reasons,
        why=why,
    )


def run_drill(cfg: DrillConfig, *, progress: Callable[[str], None] | None = None) -> DrillReport:
    """Run the drill against a live deployment and return its report."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    api = _Api(cfg)
    probes: list[Probe] = []
    try:
        tenant = api.tenant()
        issuer = str(tenant["issuer"])
        discovery = api.discovery(issuer)
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise DrillError(f"discovery of {issuer} names no jwks_uri")
        algs = tuple(discovery.get("id_token_signing_alg_values_supported") or ())
        alg = str(tenant["policy"]["alg"])
        target = Target(issuer, jwks_uri, algs or (alg,), AUDIENCE)
        try:
            probes = make_probes(cfg.verifiers, target, poll_interval=cfg.poll_interval)
        except ConfigError as exc:
            raise DrillError(exc.detail) from None
        before = {k["kid"]: k["state"] for k in api.key_list()}
        old_kid = next((kid for kid, st in before.items() if st == "current"), "")
        say(f"drill on {issuer}: {cfg.action}, verifiers: {', '.join(p.name for p in probes)}")

        # Warm-up: a first token through every probe, then a miss on an unknown kid each.
        first = api.sign()
        missing = _unknown_kid_token(alg, issuer)
        for probe in probes:
            probe.verify(first)
            probe.verify(missing)
        load = _Load(api, probes)
        load.start()
        try:
            load.stop.wait(cfg.warmup)
            with load.lock:
                # The token the action makes old: signed by the current key just before it.
                load.old = load.latest
            say(f"warm: {load.signed} tokens signed; {cfg.action} now, under load")
            t_action = time.monotonic()
            api.act(cfg.action, cfg.reason)
            action_seconds = time.monotonic() - t_action
            after = {k["kid"]: k["state"] for k in api.key_list()}
            revoked = frozenset(
                kid for kid, st in after.items() if st == "revoked" and before.get(kid) != st
            )
            # The reference is the action's answer: the commit happened inside the call, after
            # its key generation (RSA: up to a second) and any wait for the database's write
            # lock, neither of which is a verifier's delay. A refusal before the answer is 0.
            t_commit = t_action + action_seconds
            new_kid = next((kid for kid, st in after.items() if st == "current"), None)
            deadline = t_action + cfg.window
            # Watch until every probe with a promise has refused the revoked key for `settle`
            # seconds (a plain rotation: `settle` seconds of load), at most `window`.
            dropped_since: float | None = None
            while time.monotonic() < deadline:
                now = time.monotonic()
                if not revoked or _all_dropped(load, probes, revoked):
                    dropped_since = now if dropped_since is None else dropped_since
                    if now - dropped_since >= cfg.settle:
                        break
                else:
                    dropped_since = None
                load.stop.wait(0.1)
        finally:
            load.join()
        results = tuple(_judge(p, load.records[p.name], revoked, t_commit) for p in probes)
        sign_errors = dict(load.sign_errors)
        passed = all(r.passed for r in results) and not sign_errors
        return DrillReport(
            tenant=cfg.tenant,
            issuer=issuer,
            action=cfg.action,
            old_kid=old_kid,
            new_kid=new_kid,
            revoked=tuple(sorted(revoked)),
            action_seconds=action_seconds,
            signed=load.signed,
            sign_errors=sign_errors,
            verifiers=results,
            passed=passed,
            duration=time.monotonic() - started,
        )
    except httpx.HTTPError as exc:
        raise DrillError(f"cannot reach {cfg.url}: {exc!r}") from None
    finally:
        for p in probes:
            p.close()
        api.close()


def _all_dropped(load: _Load, probes: Sequence[Probe], revoked: frozenset[str]) -> bool:
    """Every probe with a promise refuses the revoked key's token now (its last answer)."""
    for p in probes:
        if p.promise is None:
            continue
        recs = load.records[p.name]
        last = next((r for r in reversed(recs) if r.old and r.kid in revoked), None)
        if last is None or last.code is None:
            return False
    return True


__all__ = [
    "ACTIONS",
    "Action",
    "DrillConfig",
    "DrillError",
    "DrillReport",
    "VerifierResult",
    "run_drill",
]
