"""Charts for the pages: inline SVG drawn on the server, readable without JavaScript.

Pure functions from numbers to an SVG string (:class:`markupsafe.Markup`, so a template shows
it as markup while every label inside was escaped here). Each chart is ``role="img"`` with a
``<title>`` and a ``<desc>`` that says its numbers in words, for screen readers. Colours are
presentation attributes, not ``style``: the pages' Content-Security-Policy allows no inline
styles. Rows put the label above its bar, so a chart stays legible when a phone shrinks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from serving.formats import percent, yuan

WIDTH = 560  # the units of a chart's drawing on a wide screen...
NARROW = 360  # ... and on a phone
INK, MUTED, GRID = "#1f2933", "#52606d", "#cbd2d9"
UP, DOWN = "#c0392b", "#1f6fb2"  # raises / lowers the output (red up, as Chinese readers expect)
TOTAL = "#3e4c59"
BAND, REFERENCE, CEILING, GRANTED = "#cfe3f5", "#0b4f8a", "#b42318", "#b7791f"
FLAGGED, UNFLAGGED = "#c0392b", "#7b8794"


@dataclass(frozen=True)
class Step:
    """One bar of a waterfall: a contribution (or the rest) that moves the running total."""

    label: str
    delta: float


def _num(value: float) -> str:
    return f"{value:.1f}"


def _text(
    x: float,
    y: float,
    content: str,
    anchor: str = "start",
    fill: str = INK,
    weight: str = "",
    halo: bool = False,
) -> str:
    """A label; with ``halo`` a white outline keeps it legible over lines drawn before it."""
    bold = ' font-weight="600"' if weight else ""
    outline = ' stroke="#ffffff" stroke-width="4" paint-order="stroke"' if halo else ""
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" fill="{fill}"{bold}{outline}>'
        f"{escape(content)}</text>"
    )


def _svg(
    ident: str, width: int, height: float, title: str, desc: str, body: Sequence[str]
) -> Markup:
    ident = str(escape(ident))
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {_num(height)}" font-size="13" '
        f'aria-labelledby="{ident}-title {ident}-desc">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _anchor(x: float, left: float, right: float) -> str:
    """Keep a label inside the chart: anchored at its start near the left edge, end near right."""
    span = right - left
    if x < left + 0.18 * span:
        return "start"
    if x > right - 0.18 * span:
        return "end"
    return "middle"


def waterfall(
    ident: str,
    title: str,
    base_label: str,
    base: float,
    steps: Sequence[Step],
    output_label: str,
    fmt: Callable[[float], str],
    fmt_delta: Callable[[float], str],
    width: int = WIDTH,
) -> Markup:
    """The reasons as a waterfall: base value, each contribution, the rest, then the output.

    Each step's bar starts where the running total stood and ends where the step moves it, so
    the last step ends exactly at the output (base + Σ steps). Raising steps are red,
    lowering ones blue; the base and the output are drawn from zero. Each row has its label
    on a line of its own and its value at the end of the bar's line.
    """
    output = base + sum(step.delta for step in steps)
    row, top, left = 40.0, 6.0, 6.0
    right, value_x = width - 92.0, width - 6.0
    totals = [base]
    for step in steps:
        totals.append(totals[-1] + step.delta)
    low, high = min(0.0, *totals), max(0.0, *totals)
    if high - low < 1e-12:
        high = low + 1.0
    ticks = nice_ticks(low, high, 4 if width < WIDTH else 5)
    low, high = min(low, *ticks), max(high, *ticks)

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    rows = len(steps) + 2
    axis_y = top + rows * row + 2
    body = [
        f'<line x1="{_num(x(t))}" y1="{_num(top)}" x2="{_num(x(t))}" y2="{_num(axis_y)}" '
        f'stroke="{GRID}" stroke-width="1"/>'
        for t in ticks
    ]

    def bar(i: int, start: float, end: float, fill: str, label: str, value: str) -> None:
        y = top + i * row
        x0, x1 = sorted((x(start), x(end)))
        body.append(_text(left, y + 13, label, halo=True))
        body.append(
            f'<rect x="{_num(x0)}" y="{_num(y + 19)}" width="{_num(max(x1 - x0, 1.5))}" '
            f'height="15" rx="2" fill="{fill}"><title>{escape(label)}：{escape(value)}</title>'
            "</rect>"
        )
        body.append(_text(value_x, y + 31, value, anchor="end", weight="bold"))

    def connector(i: int, at: float) -> None:
        y = top + i * row
        body.append(
            f'<line x1="{_num(x(at))}" y1="{_num(y + 34)}" x2="{_num(x(at))}" '
            f'y2="{_num(y + row + 19)}" stroke="{MUTED}" stroke-width="1" '
            'stroke-dasharray="3 2"/>'
        )

    bar(0, 0.0, base, TOTAL, base_label, fmt(base))
    for i, step in enumerate(steps, start=1):
        connector(i - 1, totals[i - 1])
        bar(
            i,
            totals[i - 1],
            totals[i],
            UP if step.delta >= 0 else DOWN,
            step.label,
            fmt_delta(step.delta),
        )
    connector(rows - 2, output)
    bar(rows - 1, 0.0, output, TOTAL, output_label, fmt(output))
    body.append(
        f'<line x1="{_num(left)}" y1="{_num(axis_y)}" x2="{_num(right)}" y2="{_num(axis_y)}" '
        f'stroke="{MUTED}" stroke-width="1"/>'
    )
    for t in ticks:
        body.append(_text(x(t), axis_y + 15, fmt(t), anchor=_anchor(x(t), left, right), fill=MUTED))
    desc = "；".join(
        [f"{base_label} {fmt(base)}"]
        + [f"{step.label} {fmt_delta(step.delta)}" for step in steps]
        + [f"{output_label} {fmt(output)}"]
    )
    return _svg(ident, width, axis_y + 22, title, desc, body)


def amount_axis(
    ident: str,
    reference: float,
    interval: tuple[float, float],
    ceiling: float,
    granted: float | None = None,
    width: int = WIDTH,
) -> Markup:
    """The reference amount, its 80 % interval, the statutory ceiling and the granted amount.

    One axis from zero in yuan: the interval as a band, the reference as a line across it,
    the ceiling as a dashed red line, the granted amount (when known) as a marker below.
    When the ceiling is far above the rest it stands at the axis's end behind a break (≫),
    so that the interval stays wide enough to read.
    """
    left, right = 10.0, width - 10.0
    low, high = interval
    others = max(v for v in (reference, high, granted, 1.0) if v is not None)
    far = ceiling > 2.5 * others
    top_value = others * 1.3 if far else max(others, ceiling) * 1.06
    end = right - 16 if far else right

    def x(value: float) -> float:
        return left + min(max(value, 0.0), top_value) / top_value * (end - left)

    axis = 70.0
    ceiling_x = right if far else x(ceiling)
    base_line = axis + 14  # the axis runs under the interval band
    body = [
        f'<line x1="{_num(left)}" y1="{_num(base_line)}" x2="{_num(end)}" '
        f'y2="{_num(base_line)}" stroke="{MUTED}" stroke-width="1"/>'
    ]
    if far:
        body.append(
            _text((end + right) / 2 - 2, base_line + 4, "≫", anchor="middle", fill=MUTED)
            + f'<line x1="{_num(end + 8)}" y1="{_num(base_line)}" x2="{_num(right)}" '
            f'y2="{_num(base_line)}" stroke="{MUTED}" stroke-width="1"/>'
        )
    for t in nice_ticks(0.0, top_value, 4 if width < WIDTH else 5):
        if t > top_value:
            continue
        body.append(
            f'<line x1="{_num(x(t))}" y1="{_num(axis + 14)}" x2="{_num(x(t))}" '
            f'y2="{_num(axis + 18)}" stroke="{MUTED}"/>'
        )
        body.append(_text(x(t), axis + 30, yuan(t), anchor=_anchor(x(t), left, right), fill=MUTED))
    body.append(
        f'<rect x="{_num(x(low))}" y="{_num(axis - 14)}" '
        f'width="{_num(max(x(high) - x(low), 2))}" height="28" fill="{BAND}" '
        f'stroke="{REFERENCE}" stroke-width="0.5"><title>80% 区间 {yuan(low)} – {yuan(high)}'
        "</title></rect>"
    )
    body.append(
        f'<line x1="{_num(ceiling_x)}" y1="8" x2="{_num(ceiling_x)}" y2="{_num(axis + 14)}" '
        f'stroke="{CEILING}" stroke-width="2" stroke-dasharray="5 3"/>'
    )
    body.append(
        _text(
            ceiling_x,
            18,
            f"法定上限 {yuan(ceiling)}",
            anchor=_anchor(ceiling_x, left, right),
            fill=CEILING,
        )
    )
    body.append(
        f'<line x1="{_num(x(reference))}" y1="{_num(axis - 26)}" x2="{_num(x(reference))}" '
        f'y2="{_num(axis + 14)}" stroke="{REFERENCE}" stroke-width="3"/>'
    )
    body.append(
        _text(
            x(reference),
            axis - 31,
            f"参考金额 {yuan(reference)}",
            anchor=_anchor(x(reference), left, right),
            fill=REFERENCE,
            weight="bold",
        )
    )
    middle = x((low + high) / 2)
    body.append(
        _text(
            middle,
            axis + 50,
            f"80% 区间 {yuan(low)} – {yuan(high)}",
            anchor=_anchor(middle, left, right),
            fill=REFERENCE,
        )
    )
    height = axis + 60
    desc = (
        f"参考金额 {yuan(reference)}，80% 区间 {yuan(low)} 至 {yuan(high)}，"
        f"法定上限 {yuan(ceiling)}"
    )
    if granted is not None:
        gx = x(granted)
        body.append(
            f'<path d="M{_num(gx)} {_num(axis + 58)} l-7 12 h14 z" fill="{GRANTED}">'
            f"<title>实际（拟）救助 {yuan(granted)}</title></path>"
        )
        body.append(
            _text(
                gx,
                axis + 86,
                f"实际（拟）救助 {yuan(granted)}",
                anchor=_anchor(gx, left, right),
                fill=GRANTED,
                weight="bold",
            )
        )
        height = axis + 94
        desc += f"，实际（拟）救助 {yuan(granted)}"
    return _svg(ident, width, height, "参考金额、区间与法定上限", desc, body)


def lead_gauge(
    ident: str, name_zh: str, probability: float, threshold: float, width: int = WIDTH
) -> Markup:
    """A lead's probability as a bar from 0 to 100 %, with its flagging threshold marked."""
    left, right = 6.0, width - 6.0
    flagged = probability >= threshold

    def x(value: float) -> float:
        return left + min(max(value, 0.0), 1.0) * (right - left)

    body = [
        f'<rect x="{_num(left)}" y="22" width="{_num(right - left)}" height="16" rx="3" '
        f'fill="{GRID}"/>',
        f'<rect x="{_num(left)}" y="22" width="{_num(max(x(probability) - left, 1))}" '
        f'height="16" rx="3" fill="{FLAGGED if flagged else UNFLAGGED}"/>',
        f'<line x1="{_num(x(threshold))}" y1="16" x2="{_num(x(threshold))}" y2="44" '
        f'stroke="{INK}" stroke-width="2"/>',
        _text(
            x(threshold),
            12,
            f"阈值 {percent(threshold, 0)}",
            anchor=_anchor(x(threshold), left, right),
        ),
        _text(left, 58, "0%", fill=MUTED),
        _text(right, 58, "100%", anchor="end", fill=MUTED),
    ]
    verdict = "达到阈值，已标记" if flagged else "未达阈值"
    desc = f"{name_zh}：概率 {percent(probability)}，阈值 {percent(threshold, 0)}，{verdict}"
    return _svg(ident, width, 64, f"{name_zh}概率与阈值", desc, body)


def responsive(draw: Callable[[str, int], Markup], ident: str) -> Markup:
    """A chart drawn twice, for wide screens and for phones; the stylesheet shows one.

    SVG text cannot reflow: a chart drawn for a wide screen would shrink to an unreadable
    size on a phone, so the narrow drawing has its own layout at :data:`NARROW` units.
    """
    return Markup(
        f'<div class="chart-wide">{draw(ident, WIDTH)}</div>'
        f'<div class="chart-narrow">{draw(f"{ident}-narrow", NARROW)}</div>'
    )


@dataclass(frozen=True)
class RatioRow:
    """One group of the deviation chart: the quartiles of granted ÷ reference and its flag."""

    label: str
    count: int
    q1: float
    median: float
    q3: float
    parent_median: float | None = None
    flag: str = ""  # "generous", "stingy" or empty (training.deviation's flags)
    flag_zh: str = ""


def ratio_rows(ident: str, title: str, rows: Sequence[RatioRow], width: int = WIDTH) -> Markup:
    """Each group's granted ÷ reference: the middle half as a bar, the median as a tick.

    One shared axis from 0, with the reference itself (ratio 1) as a vertical line, so the
    groups compare at a glance; a flagged group is drawn red (偏高) or blue (偏低), the
    others grey, and its parent's median (its province for an office) is a dashed tick.
    Ratios beyond the axis's end are drawn at the end (the axis stops at 3× the reference
    or the largest upper quartile, whichever is smaller, but never below 1.5×).
    """
    row, top, left = 44.0, 6.0, 6.0
    right = width - 10.0
    largest = max([r.q3 for r in rows] + [r.parent_median or 0.0 for r in rows] + [1.0])
    high = min(max(largest * 1.1, 1.5), 3.0)
    ticks = [t for t in nice_ticks(0.0, high, 4 if width < WIDTH else 6) if t <= high]

    def x(value: float) -> float:
        return left + min(max(value, 0.0), high) / high * (right - left)

    axis_y = top + len(rows) * row + 4
    body = [
        f'<line x1="{_num(x(t))}" y1="{_num(top)}" x2="{_num(x(t))}" y2="{_num(axis_y)}" '
        f'stroke="{GRID}" stroke-width="1"/>'
        for t in ticks
    ]
    body.append(
        f'<line x1="{_num(x(1.0))}" y1="{_num(top)}" x2="{_num(x(1.0))}" y2="{_num(axis_y)}" '
        f'stroke="{REFERENCE}" stroke-width="2"/>'
    )
    described = []
    for i, item in enumerate(rows):
        y = top + i * row
        colour = UP if item.flag == "generous" else DOWN if item.flag == "stingy" else UNFLAGGED
        label = f"{item.label}（{item.count} 件）" + (f" {item.flag_zh}" if item.flag_zh else "")
        ink = colour if item.flag else INK
        body.append(_text(left, y + 13, label, fill=ink, weight=item.flag, halo=True))
        x0, x1 = x(item.q1), x(item.q3)
        span = f"{percent(item.q1, 0)} – {percent(item.q3, 0)}"
        body.append(
            f'<rect x="{_num(x0)}" y="{_num(y + 20)}" width="{_num(max(x1 - x0, 2.0))}" '
            f'height="14" rx="2" fill="{colour}" fill-opacity="0.35" stroke="{colour}">'
            f"<title>{escape(item.label)}：四分位 {escape(span)}</title></rect>"
        )
        body.append(
            f'<line x1="{_num(x(item.median))}" y1="{_num(y + 16)}" x2="{_num(x(item.median))}" '
            f'y2="{_num(y + 38)}" stroke="{colour}" stroke-width="3">'
            f"<title>{escape(item.label)}：中位数 {percent(item.median, 0)}</title></line>"
        )
        if item.parent_median is not None:
            px = x(item.parent_median)
            body.append(
                f'<line x1="{_num(px)}" y1="{_num(y + 16)}" x2="{_num(px)}" y2="{_num(y + 38)}" '
                f'stroke="{INK}" stroke-width="1.5" stroke-dasharray="3 2"/>'
            )
        text = f"{item.label} {item.count} 件，中位数 {percent(item.median, 0)}，四分位 {span}"
        described.append(text + (f"，{item.flag_zh}" if item.flag_zh else ""))
    body.append(
        f'<line x1="{_num(left)}" y1="{_num(axis_y)}" x2="{_num(right)}" y2="{_num(axis_y)}" '
        f'stroke="{MUTED}" stroke-width="1"/>'
    )
    for t in ticks:
        body.append(
            _text(x(t), axis_y + 15, percent(t, 0), anchor=_anchor(x(t), left, right), fill=MUTED)
        )
    desc = "实际 ÷ 参考金额，1 即等于参考金额；" + "；".join(described)
    return _svg(ident, width, axis_y + 22, title, desc, body)
