"""The key-ring timeline picture: one bar per key over time, as server-rendered SVG.

:func:`build_timeline` is pure: from the ring's key records (the past, from their transition
times) and the ring's plan (:func:`keyturn.ring.timeline.plan`, the future) it computes every
shape; :func:`render_timeline` draws them through ``timeline.svg`` (autoescaped). Nothing needs
JavaScript: every shape has a ``<title>`` and the picture a text description.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.policy import fmt_duration
from keyturn.ring.ring import Ring
from keyturn.ring.timeline import Step, plan
from keyturn.server.admin.display import short, when
from keyturn.server.admin.templating import environment

STATE_FILL = {
    "next": "#7aa5f0",
    "current": "#2e9e5b",
    "previous": "#e3a82b",
}
WIDTH = 960
LABEL_W = 150
RIGHT_PAD = 18
TOP = 30
BAR_H = 18
GAP = 10
AXIS_H = 26
LEGEND_H = 28
MAX_LINES = 14
MIN_SHADE_PX = 2.0
_TICK_STEPS = [
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
    91 * 86400,
    182 * 86400,
    365 * 86400,
]


@dataclass(frozen=True)
class Span:
    """A stretch of time one key spent in one state; ``planned`` if it lies in the future."""

    start: float
    end: float
    state: str
    planned: bool


@dataclass(frozen=True)
class KeyLine:
    """One key's life: its spans, when it signs and stops signing, and a revocation."""

    kid: str
    spans: tuple[Span, ...]
    activated: float | None
    deactivated: float | None
    revoked_at: float | None = None
    reason: str | None = None

    @property
    def invented(self) -> bool:
        return self.kid.startswith("(new key")


def _past_spans(k: KeyRecord, now: float) -> list[Span]:
    events: list[tuple[float, str]] = [(k.created_at, KeyState.NEXT.value)]
    if k.activated_at is not None:
        events.append((k.activated_at, KeyState.CURRENT.value))
    if k.deactivated_at is not None:
        events.append((k.deactivated_at, KeyState.PREVIOUS.value))
    stop = k.revoked_at if k.state == KeyState.REVOKED else k.retired_at
    end_of_past = stop if not k.published and stop is not None else now
    spans = []
    for i, (t, state) in enumerate(events):
        t_end = events[i + 1][0] if i + 1 < len(events) else end_of_past
        t_end = min(t_end, end_of_past)
        if t_end > t:
            spans.append(Span(t, t_end, state, planned=False))
    return spans


def _future_spans(
    kid: str, state: str, since: float, steps: Sequence[Step], end: float
) -> tuple[list[Span], float | None, float | None]:
    """Walk the plan from ``since`` in ``state``; also the planned activation and deactivation."""
    spans: list[Span] = []
    activated = deactivated = None
    t = since
    for step in steps:
        if step.at < since:
            continue
        after = dict(step.jwks).get(kid)
        if after == state:
            continue
        if step.at > t:
            spans.append(Span(t, step.at, state, planned=True))
        if after is None:  # retired: gone from the JWKS
            return spans, activated, deactivated
        if after == KeyState.CURRENT.value:
            activated = step.at
        if after == KeyState.PREVIOUS.value:
            deactivated = step.at
        state, t = after, step.at
    if end > t:
        spans.append(Span(t, end, state, planned=True))
    return spans, activated, deactivated


def key_lines(
    keys: Sequence[KeyRecord], steps: Sequence[Step], now: float, end: float
) -> list[KeyLine]:
    """Every key's life from its records (past) and the plan (future), oldest key first."""
    lines: list[KeyLine] = []
    for k in sorted(keys, key=lambda r: r.created_at):
        spans = _past_spans(k, now)
        activated, deactivated = k.activated_at, k.deactivated_at
        if k.published:
            future, act, deact = _future_spans(k.kid, k.state.value, now, steps, end)
            spans += future
            activated = activated if activated is not None else act
            deactivated = deactivated if deactivated is not None else deact
        lines.append(
            KeyLine(
                k.kid,
                tuple(spans),
                activated,
                deactivated,
                k.revoked_at if k.state == KeyState.REVOKED else None,
                k.revocation_reason,
            )
        )
    known = {k.kid for k in keys}
    for i, step in enumerate(steps):
        for kid, state in step.jwks:
            if kid in known:
                continue
            known.add(kid)
            future, act, deact = _future_spans(kid, state, step.at, steps[i + 1 :], end)
            lines.append(KeyLine(kid, tuple(future), act, deact))
    return lines


# --- geometry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rect:
    x: float
    w: float
    cls: str
    fill: str
    title: str


@dataclass(frozen=True)
class Bar:
    y: float
    kid: str
    label: str
    href: str | None
    title: str
    rects: tuple[Rect, ...]
    shades: tuple[Rect, ...]
    marks: tuple[Rect, ...]


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Transition:
    x: float
    label: str
    planned: bool
    title: str


@dataclass(frozen=True)
class Timeline:
    """Everything ``timeline.svg`` draws, in pixels of a ``WIDTH``-wide view box."""

    id: str
    width: int
    height: int
    plot_left: float
    plot_right: float
    top: float
    bottom: float
    now_x: float
    now_label: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    transitions: tuple[Transition, ...]
    title: str
    desc: str
    legend_y: float


def _tick_step(span: float) -> int:
    for step in _TICK_STEPS:
        if span / step <= 9:
            return step
    return _TICK_STEPS[-1]


def _tick_label(t: float, step: int) -> str:
    fmt = "%H:%M" if step < 86400 else "%b %d"
    return time.strftime(fmt, time.gmtime(t))


def build_timeline(
    keys: Sequence[KeyRecord],
    steps: Sequence[Step],
    policy: Policy,
    now: float,
    start: float,
    end: float,
    *,
    key_href: Callable[[str], str] | None = None,
    ident: str = "tl",
) -> Timeline:
    """The shapes of the picture of ``keys`` (and the plan's new keys) over ``[start, end]``."""
    if end <= start:
        raise ValueError("the timeline needs end > start")
    plot_left, plot_right = float(LABEL_W), float(WIDTH - RIGHT_PAD)
    scale = (plot_right - plot_left) / (end - start)

    def x(t: float) -> float:
        return round(plot_left + (min(max(t, start), end) - start) * scale, 1)

    shown = [
        ln
        for ln in key_lines(keys, steps, now, end)
        if any(s.end > start for s in ln.spans)
        or (ln.revoked_at is not None and ln.revoked_at >= start)
    ]
    # The ring's own keys first (the newest, if there are too many), then the plan's new keys.
    real = [ln for ln in shown if not ln.invented][-MAX_LINES:]
    lines = real + [ln for ln in shown if ln.invented][: MAX_LINES - len(real)]
    pre, ret = policy.prepublication, policy.retention
    bars: list[Bar] = []
    for i, ln in enumerate(lines):
        y = TOP + i * (BAR_H + GAP)
        rects = []
        for s in ln.spans:
            if s.end <= start or s.start >= end:
                continue
            x0, x1 = x(s.start), x(s.end)
            verb = "planned: " if s.planned else ""
            rects.append(
                Rect(
                    x0,
                    round(max(x1 - x0, 1.0), 1),
                    f"seg st-{s.state}" + (" future" if s.planned else ""),
                    STATE_FILL.get(s.state, "#a0a7b4"),
                    f"{verb}{s.state} {when(s.start)} to {when(s.end)} UTC",
                )
            )
        shades = []
        first = ln.spans[0].start if ln.spans else start
        if ln.activated is not None and pre > 0:
            a0 = max(ln.activated - pre, first)
            if ln.activated > start and a0 < end:
                x0, x1 = x(a0), x(ln.activated)
                shades.append(
                    Rect(
                        x0,
                        round(max(x1 - x0, MIN_SHADE_PX), 1),
                        "shade prepub",
                        f"url(#{ident}-hatch)",
                        f"pre-publication: in the JWKS at least C+S = {fmt_duration(pre)} "
                        "before it signs",
                    )
                )
        if ln.deactivated is not None and ln.deactivated < end:
            r1 = ln.deactivated + ret
            if ln.revoked_at is not None:
                r1 = min(r1, ln.revoked_at)
            if r1 > start:
                x0, x1 = x(ln.deactivated), x(r1)
                shades.append(
                    Rect(
                        x0,
                        round(max(x1 - x0, MIN_SHADE_PX), 1),
                        "shade retention",
                        f"url(#{ident}-dots)",
                        f"retention: stays published max(2T, T+C+S) = {fmt_duration(ret)} "
                        "after it stops signing",
                    )
                )
        marks = []
        if ln.revoked_at is not None and start <= ln.revoked_at <= end:
            reason = f": {ln.reason}" if ln.reason else ""
            marks.append(
                Rect(
                    x(ln.revoked_at),
                    0,
                    "revoked",
                    "#c62828",
                    f"revoked {when(ln.revoked_at)} UTC{reason}",
                )
            )
        href = key_href(ln.kid) if key_href is not None and not ln.invented else None
        label = ln.kid.strip("()") if ln.invented else short(ln.kid)
        states = ", ".join(
            f"{s.state} from {when(s.start)}" + (" (planned)" if s.planned else "")
            for s in ln.spans
        )
        bars.append(
            Bar(
                y,
                ln.kid,
                label,
                href,
                f"{ln.kid}: {states}",
                tuple(rects),
                tuple(shades),
                tuple(marks),
            )
        )
    bottom = TOP + max(len(bars), 1) * (BAR_H + GAP)
    step = _tick_step(end - start)
    first_tick = (int(start) // step + 1) * step
    ticks = tuple(Tick(x(t), _tick_label(t, step)) for t in range(first_tick, int(end) + 1, step))
    transitions: list[Transition] = []
    for k in keys:
        if k.activated_at is not None and start < k.activated_at < now:
            transitions.append(
                Transition(
                    x(k.activated_at),
                    "",
                    False,
                    f"{short(k.kid)} started signing {when(k.activated_at)} UTC",
                )
            )
    last_label_x = x(now)  # the "now" label stands there
    for st in steps:
        if not start < st.at <= end:
            continue
        sx = x(st.at)
        label = st.event if abs(sx - last_label_x) > 60 else ""
        if label:
            last_label_x = sx
        transitions.append(Transition(sx, label, True, f"planned {st.event} {when(st.at)} UTC"))
    cur = next((k for k in keys if k.state == KeyState.CURRENT), None)
    nxt_rot = next((s for s in steps if s.event == "rotate"), None)
    desc = (
        f"{len(bars)} keys from {when(start)} to {when(end)} UTC; now {when(now)} UTC"
        + (f"; {short(cur.kid)} signs" if cur else "")
        + (f"; next rotation {when(nxt_rot.at)} UTC" if nxt_rot else "")
        + f". Pre-publication C+S = {fmt_duration(pre)}, retention {fmt_duration(ret)}."
    )
    return Timeline(
        id=ident,
        width=WIDTH,
        height=int(bottom + AXIS_H + LEGEND_H),
        plot_left=plot_left,
        plot_right=plot_right,
        top=TOP,
        bottom=bottom,
        now_x=x(now),
        now_label=f"now {when(now)}",
        bars=tuple(bars),
        ticks=ticks,
        transitions=tuple(transitions),
        title="Key ring timeline",
        desc=desc,
        legend_y=bottom + AXIS_H + 6,
    )


def window(keys: Sequence[KeyRecord], policy: Policy, now: float) -> tuple[float, float]:
    """What the picture spans: the published keys' past and one rotation (plus retention) on."""
    future = min(policy.rotation_period * 1.25 + policy.retention, 400 * 86400.0)
    published = [k.created_at for k in keys if k.published]
    oldest = min(published) if published else now
    past = min(max(now - oldest, future * 0.25), future)
    return now - past * 1.05, now + future


def render_timeline(tl: Timeline) -> str:
    """The picture as an inline ``<svg>`` element (autoescaped: kids and reasons are text)."""
    return environment().get_template("timeline.svg").render(tl=tl, fills=STATE_FILL)


def timeline_svg(
    ring: Ring,
    now: float,
    *,
    key_href: Callable[[str], str] | None = None,
    ident: str = "tl",
) -> str:
    """The ring's picture: :func:`window`, the ring's own plan over it, rendered."""
    start, end = window(ring.keys, ring.policy, now)
    steps = plan(ring, now, end - now)
    return render_timeline(
        build_timeline(
            ring.keys, steps, ring.policy, now, start, end, key_href=key_href, ident=ident
        )
    )
