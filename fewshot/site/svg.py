"""Small inline-SVG charts for the results page: no plotting dependency, and byte-identical output for equal input.

Every chart is an ``<svg class="plot">`` whose drawn data elements carry ``class="mark"``; ``data-marks`` says how
many there are, so the page's self-test can check that a chart drew what it was given. Coordinates are printed with
one decimal, which keeps the files small and the output independent of float noise below a tenth of a pixel.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

#: matplotlib's tab10, so the page's colours match the PNG plots of ``reproduce``.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
_FONT = 'font-family="system-ui,sans-serif"'


@dataclass(frozen=True)
class Series:
    """One line of a :func:`dot_plot`: values with 95% CI half-widths per category, and published references."""

    name: str
    points: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)


def _f(x: float) -> str:
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text


def _label(x: float) -> str:
    return f"{x:g}" if abs(x) >= 1e-9 else "0"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t < hi + step - 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


class _Frame:
    """A plotting area with a linear y axis (and optionally a linear x axis) inside an SVG of a given size."""

    def __init__(self, width: float, height: float, left: float, right: float, top: float, bottom: float,
                 yticks: Sequence[float], xticks: Sequence[float] | None = None):
        self.width, self.height = width, height
        self.x0, self.x1, self.y0, self.y1 = left, width - right, height - bottom, top
        self.yticks, self.xticks = list(yticks), list(xticks) if xticks else None

    def y(self, v: float) -> float:
        lo, hi = self.yticks[0], self.yticks[-1]
        return self.y0 + (v - lo) / (hi - lo) * (self.y1 - self.y0)

    def x(self, v: float) -> float:
        lo, hi = self.xticks[0], self.xticks[-1]
        return self.x0 + (v - lo) / (hi - lo) * (self.x1 - self.x0)

    def axes(self, ylabel: str, xlabel: str = "") -> list[str]:
        out = [f'<rect x="{_f(self.x0)}" y="{_f(self.y1)}" width="{_f(self.x1 - self.x0)}" '
               f'height="{_f(self.y0 - self.y1)}" fill="none" stroke="#999"/>']
        for t in self.yticks:
            y = _f(self.y(t))
            out.append(f'<line x1="{_f(self.x0)}" x2="{_f(self.x1)}" y1="{y}" y2="{y}" stroke="#e5e5e5"/>'
                       f'<text x="{_f(self.x0 - 5)}" y="{y}" dy="0.32em" text-anchor="end">{_label(t)}</text>')
        for t in self.xticks or []:
            x = _f(self.x(t))
            out.append(f'<line x1="{x}" x2="{x}" y1="{_f(self.y0)}" y2="{_f(self.y0 + 4)}" stroke="#999"/>'
                       f'<text x="{x}" y="{_f(self.y0 + 16)}" text-anchor="middle">{_label(t)}</text>')
        mid = _f((self.y0 + self.y1) / 2)
        out.append(f'<text x="14" y="{mid}" text-anchor="middle" transform="rotate(-90 14 {mid})">'
                   f'{escape(ylabel)}</text>')
        if xlabel:
            out.append(f'<text x="{_f((self.x0 + self.x1) / 2)}" y="{_f(self.height - 6)}" '
                       f'text-anchor="middle">{escape(xlabel)}</text>')
        return out


def _svg(width: float, height: float, title: str, marks: int, body: Sequence[str]) -> str:
    return (f'<svg class="plot" data-marks="{marks}" xmlns="http://www.w3.org/2000/svg" width="{_f(width)}" '
            f'height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}" role="img" font-size="11" {_FONT}>'
            f'<title>{escape(title)}</title>' + "".join(body) + "</svg>")


def _legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Legend rows at (x, y): (colour, symbol 'dot' | 'cross' | 'line', text)."""
    out = []
    for i, (colour, symbol, text) in enumerate(items):
        cy = y + 16 * i
        if symbol == "cross":
            out.append(_cross(x + 6, cy, colour, mark=False))
        elif symbol == "line":
            out.append(f'<line x1="{_f(x)}" x2="{_f(x + 12)}" y1="{_f(cy)}" y2="{_f(cy)}" stroke="{colour}" '
                       f'stroke-width="2"/>')
        else:
            out.append(f'<circle cx="{_f(x + 6)}" cy="{_f(cy)}" r="4" fill="{colour}"/>')
        out.append(f'<text x="{_f(x + 18)}" y="{_f(cy)}" dy="0.32em">{escape(text)}</text>')
    return out


def _cross(x: float, y: float, colour: str, mark: bool = True) -> str:
    cls = ' class="mark ref"' if mark else ""
    return (f'<path{cls} d="M{_f(x - 4)} {_f(y - 4)}L{_f(x + 4)} {_f(y + 4)}M{_f(x - 4)} {_f(y + 4)}'
            f'L{_f(x + 4)} {_f(y - 4)}" stroke="{colour}" stroke-width="2" fill="none"/>')


def dot_plot(categories: Sequence[str], series: Sequence[Series], *, ylabel: str, title: str = "") -> str:
    """Values with 95% CI bars per category (a dot per series, side by side), references drawn as crosses."""
    values = [v for s in series for v, ci in s.points.values() for v in (v - (ci or 0), v + (ci or 0))]
    values += [v for s in series for v in s.references.values()]
    ticks = nice_ticks(min(values, default=0.0), max(values, default=1.0))
    wrapped = [textwrap.wrap(c, 16) or [""] for c in categories]
    lines = max((len(w) for w in wrapped), default=1)
    slot = max(105.0, 22.0 * len(series))
    legend = 40 + 6.2 * max((len(s.name) + (0 if s.points else 8) for s in series), default=10)
    width = 60 + slot * max(len(categories), 1) + legend
    frame = _Frame(width, max(250 + 13 * lines, 60 + 16 * len(series)), 60, legend, 12, 22 + 13 * lines, ticks)
    body = frame.axes(ylabel)
    marks = 0
    for c, (category, label) in enumerate(zip(categories, wrapped)):
        centre = frame.x0 + slot * (c + 0.5)
        text = "".join(f'<tspan x="{_f(centre)}" dy="{"1.2em" if i else "0"}">{escape(t)}</tspan>'
                       for i, t in enumerate(label))
        body.append(f'<text y="{_f(frame.y0 + 16)}" text-anchor="middle">{text}</text>')
        present = [i for i, s in enumerate(series) if category in s.points or category in s.references]
        for k, i in enumerate(present):
            s, colour = series[i], PALETTE[i % len(PALETTE)]
            x = centre + (k - (len(present) - 1) / 2) * min(16.0, (slot - 10) / max(len(present), 1))
            if category in s.points:
                value, ci = s.points[category]
                if ci is not None and math.isfinite(ci) and ci > 0:
                    body.append(f'<line class="ci" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.y(value - ci))}" '
                                f'y2="{_f(frame.y(value + ci))}" stroke="{colour}" stroke-width="1.5"/>')
                body.append(f'<circle class="mark" cx="{_f(x)}" cy="{_f(frame.y(value))}" r="4" fill="{colour}">'
                            f'<title>{escape(s.name)}, {escape(category)}: {value:.2f}'
                            f'{f" ± {ci:.2f}" if ci is not None and math.isfinite(ci) else ""}</title></circle>')
                marks += 1
            if category in s.references:
                body.append(_cross(x, frame.y(s.references[category]), colour))
                marks += 1
    items = [(PALETTE[i % len(PALETTE)], "dot" if s.points else "cross", s.name + ("" if s.points else " (paper)"))
             for i, s in enumerate(series)]
    if any(s.points and s.references for s in series):
        items.append(("#444", "cross", "paper's number"))
    body += _legend(frame.x1 + 14, frame.y1 + 8, items)
    return _svg(width, frame.height, title or ylabel, marks, body)


def line_plot(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, xlabel: str, ylabel: str,
              title: str = "") -> str:
    """Lines of (x, y) points, one per named series (a learning curve: loss or accuracy against step)."""
    xs = [x for _, points in series for x, _ in points]
    ys = [y for _, points in series for _, y in points if math.isfinite(y)]
    # Several series get a right margin for their legend.
    frame = _Frame(420 if len(series) < 2 else 530, 230, 56, 20 if len(series) < 2 else 130, 12, 40,
                   nice_ticks(min(ys, default=0.0), max(ys, default=1.0)),
                   nice_ticks(min(xs, default=0.0), max(xs, default=1.0), 4))
    body = frame.axes(ylabel, xlabel)
    marks = 0
    for i, (name, points) in enumerate(series):
        finite = [(x, y) for x, y in points if math.isfinite(y)]
        if not finite:
            continue
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{_f(frame.x(x))},{_f(frame.y(y))}" for x, y in finite)
        body.append(f'<polyline class="mark" points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
                    f'<title>{escape(name)}</title></polyline>')
        marks += 1
        if len(finite) == 1:  # a single point draws no line: show it as a dot
            body.append(f'<circle cx="{_f(frame.x(finite[0][0]))}" cy="{_f(frame.y(finite[0][1]))}" r="3" '
                        f'fill="{colour}"/>')
    if len(series) > 1:
        body += _legend(frame.x1 + 12, frame.y1 + 8, [(PALETTE[i % len(PALETTE)], "line", name)
                                                     for i, (name, _) in enumerate(series)])
    return _svg(frame.width, frame.height, title or ylabel, marks, body)


def bar_plot(labels: Sequence[str], values: Sequence[float], *, ylabel: str, title: str = "") -> str:
    """One bar per label (a throughput per implementation, say)."""
    ticks = nice_ticks(0.0, max([v for v in values if math.isfinite(v)], default=1.0))
    slot = 90.0
    frame = _Frame(60 + slot * max(len(labels), 1) + 20, 230, 60, 20, 12, 36, ticks)
    body = frame.axes(ylabel)
    marks = 0
    for i, (label, value) in enumerate(zip(labels, values)):
        centre = frame.x0 + slot * (i + 0.5)
        body.append(f'<text x="{_f(centre)}" y="{_f(frame.y0 + 16)}" text-anchor="middle">{escape(label)}</text>')
        if not math.isfinite(value):
            continue
        top = frame.y(value)
        body.append(f'<rect class="mark" x="{_f(centre - 25)}" y="{_f(top)}" width="50" '
                    f'height="{_f(frame.y0 - top)}" fill="{PALETTE[i % len(PALETTE)]}">'
                    f'<title>{escape(label)}: {value:.3g}</title></rect>')
        marks += 1
    return _svg(frame.width, frame.height, title or ylabel, marks, body)
