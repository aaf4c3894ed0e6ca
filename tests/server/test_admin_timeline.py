"""The timeline picture as a pure function: spans from records and plan, shapes, the SVG."""

from __future__ import annotations

import re

import pytest

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.ring import Ring
from keyturn.ring.timeline import plan
from keyturn.server.admin.timeline import (
    Span,
    build_timeline,
    key_lines,
    render_timeline,
    timeline_svg,
    window,
)

# R = 1h, T = 5m, C = 1m, S = 30s: pre-publication 90s, retention max(2T, T+C+S) = 600s.
POLICY = Policy(alg=Alg.ES256, rotation_period=3600, token_ttl=300, jwks_max_age=60, clock_skew=30)


def key(kid: str) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg=Alg.ES256,
        state=KeyState.NEXT,
        public_jwk={"kid": kid},
        created_at=0.0,
        sealed_private=b"sealed",
        master_key_id="mk",
    )


def ring_rotated_once() -> Ring:
    """Created at 0 (A current, B next); rotated at 3600 (B current, A previous, C next)."""
    ring = Ring("t", POLICY, [])
    ring.bootstrap(0.0, key("A"), key("B"))
    ring.rotate(3600.0, key("C"))
    return ring


def test_key_lines_join_the_past_from_records_and_the_future_from_the_plan() -> None:
    ring = ring_rotated_once()
    now, end = 3900.0, 9000.0
    lines = {ln.kid: ln for ln in key_lines(ring.keys, plan(ring, now, end - now), now, end)}
    assert lines["A"].spans == (
        Span(0.0, 3600.0, "current", planned=False),
        Span(3600.0, 3900.0, "previous", planned=False),
        Span(3900.0, 4200.0, "previous", planned=True),  # retired at retire_after = 3600 + 600
    )
    assert lines["B"].spans == (
        Span(0.0, 3600.0, "next", planned=False),
        Span(3600.0, 3900.0, "current", planned=False),
        Span(3900.0, 7200.0, "current", planned=True),  # the scheduled rotation at 3600 + R
        Span(7200.0, 7800.0, "previous", planned=True),
    )
    assert lines["B"].activated == 3600.0 and lines["B"].deactivated == 7200.0
    assert lines["C"].spans == (
        Span(3600.0, 3900.0, "next", planned=False),
        Span(3900.0, 7200.0, "next", planned=True),
        Span(7200.0, 9000.0, "current", planned=True),
    )
    assert lines["C"].activated == 7200.0  # planned, so its pre-publication is drawn too
    assert lines["(new key 1)"].spans == (Span(7200.0, 9000.0, "next", planned=True),)


def test_shapes_are_placed_on_the_time_axis() -> None:
    ring = ring_rotated_once()
    now = 3900.0
    tl = build_timeline(ring.keys, plan(ring, now, 5100), POLICY, now, 0.0, 9000.0)
    # The plot runs from x=150 to x=942: 792 px for 9000 s.
    assert tl.plot_left == 150.0 and tl.plot_right == 942.0
    assert tl.now_x == 493.2  # 150 + 3900 * 792 / 9000
    assert [b.label for b in tl.bars] == ["A", "B", "C", "new key 1"]
    a, b, c, _ = tl.bars
    assert [(r.x, r.w, r.cls) for r in a.rects] == [
        (150.0, 316.8, "seg st-current"),
        (466.8, 26.4, "seg st-previous"),
        (493.2, 26.4, "seg st-previous future"),
    ]
    # A's retention window: the 600 s after it stopped signing at 3600.
    assert [(s.x, s.w, s.cls) for s in a.shades] == [(466.8, 52.8, "shade retention")]
    # B's pre-publication window, the 90 s (C + S) before it signed at 3600: 7.9 px wide.
    pre = [s for s in b.shades if s.cls == "shade prepub"]
    assert [(s.x, s.w) for s in pre] == [(458.9, 7.9)]
    assert "C+S = 1m30s" in pre[0].title
    # Planned steps: A retires at 4200, B rotates out at 7200, B retires at 7800; a label
    # closer than 60 px to the previous one (or to "now") is left out, the line stays.
    assert [(t.x, t.label) for t in tl.transitions if t.planned] == [
        (519.6, ""),
        (783.6, "rotate"),
        (836.4, ""),
    ]
    assert [t.title for t in tl.transitions if t.planned][
        1
    ] == "planned rotate 1970-01-01 02:00 UTC"
    assert not any(bar.marks for bar in tl.bars)


def test_revocations_are_marked_and_every_text_is_escaped() -> None:
    ring = ring_rotated_once()
    ring.revoke("A", 3700.0, "<b>leaked</b>", None)
    now = 3900.0
    tl = build_timeline(ring.keys, plan(ring, now, 5100), POLICY, now, 0.0, 9000.0)
    a = tl.bars[0]
    assert [(m.x, m.cls) for m in a.marks] == [(475.6, "revoked")]
    assert a.rects[-1].x + a.rects[-1].w == 475.6  # nothing after the revocation
    svg = render_timeline(tl)
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "&lt;b&gt;leaked&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count('class="revoked"') == 1
    assert len(re.findall(r'<g class="bar"', svg)) == 4


@pytest.mark.parametrize(
    ("period", "future"),
    [
        pytest.param(3600, 4500 + 7200, id="one-hour"),  # retention max(2T, T+C+S) = 2h
        pytest.param(30 * 86400, 30 * 86400 * 1.25 + 7200, id="thirty-days"),
        pytest.param(900 * 86400, 400 * 86400, id="capped"),
    ],
)
def test_window_spans_one_rotation_and_retention_ahead(period: float, future: float) -> None:
    policy = Policy(alg=Alg.ES256, rotation_period=period)
    start, end = window([], policy, 1000.0)
    assert end == 1000.0 + future
    assert start == pytest.approx(1000.0 - future * 0.25 * 1.05)


def test_timeline_svg_links_real_keys_only() -> None:
    ring = ring_rotated_once()
    svg = timeline_svg(ring, 3900.0, key_href=lambda kid: f"/admin/t/t/keys/{kid}")
    assert 'href="/admin/t/t/keys/B"' in svg
    assert "keys/(new key" not in svg
