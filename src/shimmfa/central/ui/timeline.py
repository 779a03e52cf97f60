"""A shim's heartbeat timeline as a server-side SVG plot: each accepted
heartbeat is a dot at the time it arrived, at the height of the gap since
the one before it; the expected period and the `missing` threshold (three
periods) are drawn as lines, and the silence since the last heartbeat
rises towards them on the right. Tampered heartbeats are drawn as squares
in another colour (shape, not colour only, tells them apart).

The SVG is built from numbers only (no text from the shim) and carries a
title and a description, so a screen reader says what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from shimmfa.central.models import HeartbeatRow
from shimmfa.central.status import MISSING_PERIODS

__all__ = ["timeline_svg"]

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 28


def _clock(at: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%S")


def timeline_svg(beats: Sequence[HeartbeatRow], period: float, now: float) -> str:
    if not beats:
        return (
            '<p class="empty">No heartbeat accepted yet (or none within the retention), '
            "so there is nothing to plot.</p>"
        )
    start = beats[0].received_at
    span = max(now - start, period)
    top = MISSING_PERIODS * period * 1.25
    gaps = [0.0] + [b.received_at - a.received_at for a, b in zip(beats, beats[1:], strict=False)]
    silence = now - beats[-1].received_at

    def x(at: float) -> float:
        return LEFT + (at - start) / span * (WIDTH - LEFT - RIGHT)

    def y(gap: float) -> float:
        return TOP + (1 - min(gap, top) / top) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="tl-title tl-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="tl-title">Heartbeat timeline</title>',
        f'<desc id="tl-desc">{len(beats)} heartbeats from {_clock(start)} UTC to now; the '
        f"longest gap between two was {max(gaps):.1f} s; the period is {period:g} s; "
        f"silent for {silence:.1f} s now.</desc>",
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" class="tl-area"/>',
    ]
    for label, gap, css in (
        ("period", period, "tl-period"),
        ("missing", MISSING_PERIODS * period, "tl-missing"),
    ):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(gap):.1f}" y2="{y(gap):.1f}" '
            f'class="{css}"/><text x="{LEFT - 4}" y="{y(gap) + 4:.1f}" class="tl-label" '
            f'text-anchor="end">{label}</text>'
        )
    points = []
    for beat, gap in zip(beats, gaps, strict=True):
        cx, cy = x(beat.received_at), y(gap)
        points.append(f"{cx:.1f},{cy:.1f}")
        if beat.state == "tampered":
            parts.append(f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" '
                         'class="tl-tampered"/>')  # fmt: skip
        else:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" class="tl-beat"/>')
    parts.append(f'<polyline points="{" ".join(points)}" class="tl-line"/>')
    last = x(beats[-1].received_at)
    parts.append(
        f'<line x1="{last:.1f}" y1="{y(0):.1f}" x2="{x(now):.1f}" y2="{y(silence):.1f}" '
        'class="tl-silence"/>'
    )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 8}" class="tl-label">{_clock(start)} UTC</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" class="tl-label" '
        'text-anchor="end">now</text></svg>'
    )
    return "".join(parts)
