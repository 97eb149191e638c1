"""Charts as inline SVG, drawn here on the server: no script, no external library, no network.

Each chart is an <svg role="img"> with a title and a description, every bar has its own
<title> (a tooltip, read by screen readers), and the numbers are also given as a table in a
<details> element below it, for keyboards and screen readers alike. Colours come from the
stylesheet (classes `awarded`, `spent`, `level`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ingest.dashboard_html import e, table

WIDTH, HEIGHT = 600, 220
_PAD_LEFT, _PAD_BOTTOM, _PAD_TOP = 44, 24, 10


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (1 for nothing)."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def points_chart(
    series: Sequence[tuple[date, int, int]], *, title: str, awarded: str, spent: str, row
) -> str:
    """Awarded and spent points per day, two bars a day. `row(day, awarded, spent)` words one
    day for its tooltip."""
    top = _nice_max(max((max(a, s) for _, a, s in series), default=0))
    plot_w, plot_h = WIDTH - _PAD_LEFT - 4, HEIGHT - _PAD_BOTTOM - _PAD_TOP
    slot = plot_w / max(len(series), 1)
    bar = max(slot * 0.4, 1.0)
    parts = [
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}"'
        f' x2="{WIDTH - 4}" y2="{_PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{_PAD_LEFT - 6}" y="{_PAD_TOP + 8}" text-anchor="end">{top}</text>',
        f'<text class="tick" x="{_PAD_LEFT - 6}" y="{_PAD_TOP + plot_h}" text-anchor="end">'
        "0</text>",
    ]
    for i, (day, a, s) in enumerate(series):
        x = _PAD_LEFT + i * slot + slot * 0.1
        words = e(row(day.isoformat(), a, s))
        parts.append(f"<g><title>{words}</title>")
        for offset, value, css in ((0.0, a, "awarded"), (bar, s, "spent")):
            h = plot_h * value / top
            parts.append(
                f'<rect class="{css}" x="{x + offset:.1f}" y="{_PAD_TOP + plot_h - h:.1f}"'
                f' width="{bar:.1f}" height="{h:.1f}"/>'
            )
        parts.append("</g>")
    if series:
        y = HEIGHT - 6
        first, last = series[0][0].strftime("%d.%m"), series[-1][0].strftime("%d.%m")
        parts.append(f'<text class="tick" x="{_PAD_LEFT}" y="{y}">{first}</text>')
        parts.append(f'<text class="tick" x="{WIDTH - 4}" y="{y}" text-anchor="end">{last}</text>')
    legend = (
        f'<p class="legend"><span class="swatch awarded"></span>{e(awarded)}'
        f' <span class="swatch spent"></span>{e(spent)}</p>'
    )
    data = table(
        title,
        ["", awarded, spent],
        [[e(day.isoformat()), str(a), str(s)] for day, a, s in series if a or s],
    )
    return _figure("points-chart", title, "".join(parts), legend, data)


def levels_chart(counts: Sequence[tuple[str, int]], *, title: str, row) -> str:
    """Customers per level, one horizontal bar a level. `row(level, count)` words a bar."""
    top = _nice_max(max((c for _, c in counts), default=0))
    line, label_w = 28, 140
    height = max(len(counts), 1) * line + 8
    parts = []
    for i, (name, count) in enumerate(counts):
        y = 4 + i * line
        w = (WIDTH - label_w - 60) * count / top
        parts.append(
            f"<g><title>{e(row(name, count))}</title>"
            f'<text class="tick" x="{label_w - 8}" y="{y + 17}" text-anchor="end">{e(name)}</text>'
            f'<rect class="level" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{line - 10}"/>'
            f'<text class="tick" x="{label_w + w + 6:.1f}" y="{y + 17}">{count}</text></g>'
        )
    data = table(title, ["", title], [[e(n), str(c)] for n, c in counts])
    return _figure("levels-chart", title, "".join(parts), "", data, height=height)


def _figure(
    ident: str, title: str, shapes: str, legend: str, data: str, height: int = HEIGHT
) -> str:
    return (
        f'<figure id="{ident}"><figcaption id="{ident}-title">{e(title)}</figcaption>'
        f'<svg role="img" aria-labelledby="{ident}-title" viewBox="0 0 {WIDTH} {height}"'
        f' xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
        f"{shapes}</svg>{legend}<details><summary>{e(title)}</summary>{data}</details></figure>"
    )
