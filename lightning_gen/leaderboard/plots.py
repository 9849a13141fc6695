"""The board's scatter plots, drawn as inline SVG: sample quality against parameter count and sampling speed,
likelihood against training time. One point per run, coloured by family, labelled without overlaps where it can
and joined to its label by a leader line.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from lightning_gen.leaderboard.formatting import displayed, esc, fmt_count, fmt_metric
from lightning_gen.leaderboard.ranking import METRICS, Entry

__all__ = ["FAMILY_COLORS", "LABEL_CHAR_WIDTH", "LABEL_HEIGHT", "OTHER_FAMILY_COLORS", "PLOTS", "POINT_RADIUS",
           "PlotSpec", "family_color", "leader_line", "log_ticks", "nice_ticks", "place_label", "scatter_svg"]

#: Colours of the families the models in this repository declare (the page's CSS gives their badges the same).
FAMILY_COLORS = {"autoregressive": "#1f77b4", "latent": "#2ca02c", "gan": "#d62728", "baseline": "#7f7f7f",
                 "flow": "#9467bd", "boltzmann": "#8c564b", "diffusion": "#e377c2"}
#: Colours for any other family, picked by a hash of its name (the rest of the tab10 palette).
OTHER_FAMILY_COLORS = ("#ff7f0e", "#bcbd22", "#17becf")


def family_color(family: str) -> str:
    """The family's colour: its own for the families above, else a fixed pick from :data:`OTHER_FAMILY_COLORS` by a
    hash of the name (the same in every process and on every page)."""
    if family in FAMILY_COLORS:
        return FAMILY_COLORS[family]
    digest = hashlib.sha256(family.encode("utf-8")).digest()
    return OTHER_FAMILY_COLORS[int.from_bytes(digest[:4], "big") % len(OTHER_FAMILY_COLORS)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` evenly spaced round ticks (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering [lo, hi] (both > 0), with 2x and 5x added when there are few."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    ticks = [10.0 ** k for k in range(a, b + 1)]
    if len(ticks) <= 3:  # a narrow range: add 2x and 5x so the axis is readable
        ticks = sorted({t * m for t in ticks for m in (1, 2, 5) if 10.0 ** a <= t * m <= 10.0 ** b})
    return ticks


def tick_label(v: float, log: bool) -> str:
    return fmt_count(v) if log else f"{v:g}"


@dataclass(frozen=True)
class PlotSpec:
    """One scatter plot: which value goes on each axis, and how the axes are labelled."""

    title: str
    x: str  # "num_params", "train_time_h", "samples_per_s"
    y: str  # a METRICS key, or "nll" for whichever NLL the dataset is ranked by
    x_label: str
    log_x: bool


#: The plots under each dataset's table, in order.
PLOTS = (
    PlotSpec("FID against parameter count", "num_params", "fid", "parameters (log scale)", True),
    PlotSpec("FID against sampling speed", "samples_per_s", "fid", "samples / s (log scale)", True),
    PlotSpec("NLL against training time", "train_time_h", "nll", "training time (hours)", False),
)


def x_value(entry: Entry, x: str) -> float | None:
    """The entry's value on a plot's x axis (training time in hours from the record), or ``None``."""
    if x == "train_time_h":
        t = (entry.record or {}).get("train_time_s")
        return t / 3600 if isinstance(t, (int, float)) and t > 0 else None
    return entry.value(x)


#: Label geometry, in SVG units: the CSS sets ``.plabel`` to 10px, whose glyphs average under 6.2 units wide.
LABEL_HEIGHT, LABEL_CHAR_WIDTH, POINT_RADIUS = 11.0, 6.2, 5.0

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


def _label_box(lx: float, ly: float, anchor: str, width: float) -> Box:
    x0 = lx if anchor == "start" else lx - width
    return (x0, ly - LABEL_HEIGHT + 2, x0 + width, ly + 2)


def place_label(cx: float, cy: float, width: float, placed: list[Box], frame: Box) -> tuple[float, float, str, Box]:
    """A spot for a point's label that overlaps no earlier label or point, greedily, nearest spots first; its box is
    added to ``placed``. Returns the text position, its ``text-anchor`` and the box."""
    candidates = []
    for dx in (7, 16, 30):
        for dy in (-6, 13, -17, 24, -28, 35, -39, 46, -50):
            candidates += [(cx + dx, cy + dy, "start"), (cx - dx, cy + dy, "end")]
    # nearest first, in 4-unit steps so that ties keep the order above (above right, then above left, ...)
    candidates.sort(key=lambda c: round(_gap((cx, cy), _label_box(c[0], c[1], c[2], width)) / 4))
    best = None
    for lx, ly, anchor in candidates:
        box = _label_box(lx, ly, anchor, width)
        inside = box[0] >= frame[0] and box[2] <= frame[2] and box[1] >= frame[1] and box[3] <= frame[3]
        clear = not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed)
        if inside and clear:
            best = (lx, ly, anchor, box)
            break
        if best is None and inside:
            best = (lx, ly, anchor, box)  # overlapping, but at least inside the frame
    if best is None:
        lx, ly, anchor = (cx + 7, cy - 6, "start") if cx < (frame[0] + frame[2]) / 2 else (cx - 7, cy - 6, "end")
        best = (lx, ly, anchor, _label_box(lx, ly, anchor, width))
    placed.append(best[3])
    return best


def _nearest(point: tuple[float, float], box: Box) -> tuple[float, float]:
    """The point of ``box`` nearest to ``point``."""
    return min(max(point[0], box[0]), box[2]), min(max(point[1], box[1]), box[3])


def _gap(point: tuple[float, float], box: Box) -> float:
    nx, ny = _nearest(point, box)
    return math.hypot(nx - point[0], ny - point[1])


def leader_line(cx: float, cy: float, box: Box, r: float = POINT_RADIUS) -> tuple[float, float, float, float]:
    """The segment from the edge of the dot at (cx, cy) to the nearest point of its label's box, so a label that
    had to move away from a crowded dot still points at it."""
    nx, ny = _nearest((cx, cy), box)
    d = math.hypot(nx - cx, ny - cy)
    if d <= r:  # the label touches the dot
        return nx, ny, nx, ny
    return cx + (nx - cx) * r / d, cy + (ny - cy) * r / d, nx, ny


def scatter_svg(spec: PlotSpec, y_key: str, entries: Sequence[Entry]) -> str | None:
    """The plot as an ``<svg>`` element, one labelled point per entry with both values; ``None`` under 2 points.

    Each label is joined to its dot by a leader line; y values are shown as the table prints them (KID ×10³).
    """
    points = [(x, displayed(y_key, y), e) for e in entries
              if (x := x_value(e, spec.x)) is not None and (y := e.value(y_key)) is not None
              and (x > 0 or not spec.log_x)]
    if len(points) < 2:  # one point plots nothing the table does not say
        return None
    W, H, L, R, T, B = 400, 270, 58, 14, 30, 44
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if spec.log_x:
        xt = log_ticks(min(xs), max(xs))
        fx = lambda v: math.log10(v)  # noqa: E731
    else:
        xt = nice_ticks(min(0.0, min(xs)), max(xs))
        fx = lambda v: v  # noqa: E731
    yt = nice_ticks(min(ys), max(ys))
    x0, x1 = fx(xt[0]), fx(xt[-1])
    y0, y1 = yt[0], yt[-1]
    px = lambda v: L + (fx(v) - x0) / ((x1 - x0) or 1) * (W - L - R)  # noqa: E731
    py = lambda v: H - B - (v - y0) / ((y1 - y0) or 1) * (H - T - B)  # noqa: E731
    metric = METRICS[y_key]
    y_label = f"{metric.label} ({'lower' if metric.lower_is_better else 'higher'} is better)"
    out = [f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{esc(spec.title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{W / 2}" y="18" class="ptitle" text-anchor="middle">{esc(spec.title)}</text>']
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{H - B + 14}" text-anchor="middle" class="tick">'
                   f'{esc(tick_label(t, spec.log_x))}</text>')
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{t:g}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle" class="axis">{esc(spec.x_label)}</text>')
    out.append(f'<text transform="translate(14 {(T + H - B) / 2}) rotate(-90)" text-anchor="middle" '
               f'class="axis">{esc(y_label)}</text>')
    r = POINT_RADIUS
    placed: list[Box] = [(px(x) - r, py(y) - r, px(x) + r, py(y) + r) for x, y, _ in points]
    for x, y, e in sorted(points, key=lambda p: p[1]):
        cx, cy = px(x), py(y)
        color = family_color(e.family)
        lx, ly, anchor, box = place_label(cx, cy, LABEL_CHAR_WIDTH * len(e.label), placed, (L, T, W - R, H - B))
        ax, ay, bx, by = leader_line(cx, cy, box)
        value = fmt_metric(y_key, e.value(y_key))
        out.append(f'<g class="pt" data-family="{esc(e.family)}">'
                   f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" class="leader" stroke="{color}"/>'
                   f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:g}" fill="{color}">'
                   f'<title>{esc(e.label)}: {esc(metric.label)} {esc(value)}</title></circle>'
                   f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" class="plabel">'
                   f'{esc(e.label)}</text></g>')
    out.append("</svg>")
    return "".join(out)
