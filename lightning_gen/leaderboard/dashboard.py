"""Static HTML leaderboard: one self-contained page (inline CSS, JS, SVG plots and sample grids; no network).

Per dataset, a table ranked by one metric with the evaluation protocol printed beside every number, the published
numbers from :mod:`~lightning_gen.leaderboard.references` marked as such, each run's sample grid embedded as a
data URI and a link to its W&B run, followed by scatter plots drawn here as SVG (sample quality against
parameter count and sampling speed, likelihood against training time). Columns sort on click; selects filter by
dataset and model family.

Everything that comes from a record (run names, configs, paths, URLs) is HTML-escaped, and a URL becomes a link
only if it is http(s), so a run called ``<script>alert(1)</script>`` is shown as text.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning_gen.leaderboard.references import published_entries
from lightning_gen.leaderboard.store import DEFAULT_DB, FAMILIES, Store, read_records

__all__ = ["DEFAULT_OUT", "METRICS", "Entry", "Metric", "build_entries", "choose_metric", "log_to_wandb", "main",
           "rank", "render_dashboard", "wandb_table_rows"]

DEFAULT_OUT = Path("results/leaderboard/index.html")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    lower_is_better: bool
    kind: str  # "quality", "likelihood", "probe", "speed": decides which protocol fields are printed beside it
    std_key: str | None = None


#: Rankable metrics, in the order their columns appear.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fid", "FID", True, "quality"),
    Metric("kid_mean", "KID", True, "quality", std_key="kid_std"),
    Metric("is_mean", "IS", False, "quality", std_key="is_std"),
    Metric("nll_bpd", "NLL (bits/dim)", True, "likelihood"),
    Metric("nll_nats", "NLL (nats)", True, "likelihood"),
    Metric("probe_acc", "Probe acc.", False, "probe"),
    Metric("samples_per_s", "Samples/s", False, "speed"),
)}


@dataclass
class Entry:
    """One row of the board: a stored run, or a published number (``published=True``)."""

    model: str
    family: str
    dataset: str
    metrics: dict[str, Any]
    published: bool = False
    run_name: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)  # a run's record protocol
    protocol_note: str | None = None  # a published row's protocol, as printed in the source
    source: str | None = None
    note: str | None = None
    record: dict[str, Any] | None = None
    sample_grid: Path | None = None

    @property
    def label(self) -> str:
        return self.run_name or self.model

    def value(self, metric: str) -> float | None:
        v = self.metrics.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _resolve(path: str | None, roots: Sequence[Path]) -> Path | None:
    if not path:
        return None
    p = Path(path)
    for candidate in [p] if p.is_absolute() else [p, *(root / p for root in roots)]:
        if candidate.is_file():
            return candidate
    return None


def build_entries(records: Sequence[dict[str, Any]], *, include_published: bool = True,
                  roots: Sequence[str | Path] = ()) -> list[Entry]:
    """Board rows for ``records`` plus every published number.

    A relative sample-grid path is looked up from the working directory, then from each of ``roots``.
    """
    roots = [Path(r) for r in roots]
    entries = [
        Entry(model=r["model"], family=r["family"], dataset=r["dataset"], metrics=dict(r.get("metrics") or {}),
              run_name=r["run_name"], protocol=dict(r.get("protocol") or {}), record=r,
              sample_grid=_resolve(r.get("sample_grid"), roots))
        for r in records
    ]
    if include_published:
        entries += [Entry(model=p["model"], family=p["family"], dataset=p["dataset"], metrics=p["metrics"],
                          published=True, protocol_note=p["protocol"], source=p["source"], note=p["note"])
                    for p in published_entries()]
    return entries


def choose_metric(entries: Sequence[Entry], preferred: str | None = None) -> str | None:
    """The metric a dataset's table is ranked by.

    ``preferred`` if any row has it; otherwise FID, KID or IS (first present), then the NLL that more rows report
    (bits/dim on a tie), then probe accuracy, then sampling speed. ``None`` if no row has any metric.
    """
    def count(key: str) -> int:
        return sum(e.value(key) is not None for e in entries)

    if preferred is not None:
        if preferred not in METRICS:
            raise ValueError(f"unknown metric {preferred!r}; expected one of {tuple(METRICS)}")
        if count(preferred):
            return preferred
    for key in ("fid", "kid_mean", "is_mean"):
        if count(key):
            return key
    if count("nll_bpd") or count("nll_nats"):
        return "nll_bpd" if count("nll_bpd") >= count("nll_nats") else "nll_nats"
    for key in ("probe_acc", "samples_per_s"):
        if count(key):
            return key
    return None


def rank(entries: Sequence[Entry], metric: str) -> list[tuple[int | None, Entry]]:
    """Entries best first by ``metric`` with competition ranks (1, 2, 2, 4); rows without it last, unranked."""
    sign = 1.0 if METRICS[metric].lower_is_better else -1.0
    scored = [e for e in entries if e.value(metric) is not None]
    scored.sort(key=lambda e: sign * e.value(metric))  # stable: ties keep their order
    out: list[tuple[int | None, Entry]] = []
    for i, e in enumerate(scored):
        same_as_previous = i > 0 and e.value(metric) == scored[i - 1].value(metric)
        out.append((out[-1][0] if same_as_previous else i + 1, e))
    out += [(None, e) for e in entries if e.value(metric) is None]
    return out


# ----------------------------------------------------------------------------------------------------------
# Formatting


def _e(value: Any) -> str:
    """HTML-escape anything for text or a double-quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_metric(key: str, v: float) -> str:
    if key in ("fid", "is_mean", "nll_nats"):
        return f"{v:.2f}"
    if key == "kid_mean":
        return f"{v:.4f}"
    if key == "nll_bpd":
        return f"{v:.3f}"
    if key == "probe_acc":
        return f"{100 * v:.1f}%"
    if key == "samples_per_s":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3g}"
    return f"{v:.4g}"


def _fmt_params(n: float | None) -> str:
    if n is None:
        return ""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m" if m else f"{s}s"


def _count(n: Any) -> str:
    """10000 -> "10k", as the papers write sample counts."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return str(n)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:g}"


def _protocol_parts(metric: Metric, entry: Entry) -> list[str]:
    """The protocol fields that decide whether this number is comparable, printed beside it."""
    if entry.published:
        return entry.protocol_note.split(", ") if entry.protocol_note else []
    p = entry.protocol
    parts: list[str] = []
    if metric.kind == "quality":
        if p.get("extractor"):
            parts.append(str(p["extractor"]))
        if p.get("num_samples"):
            vs = f" vs {p['reference_split']}" if p.get("reference_split") else ""
            parts.append(f"{_count(p['num_samples'])} samples{vs}")
    elif metric.kind == "likelihood":
        parts.append(str(p.get("nll_estimator") or "estimator not recorded"))
        if p.get("num_test_images"):
            parts.append(f"{_count(p['num_test_images'])} test images")
    elif metric.kind == "probe":  # a linear classifier on the model's own features, not the extractor's
        parts.append("linear probe")
        if p.get("num_test_images"):
            parts.append(f"{_count(p['num_test_images'])} test images")
    elif metric.kind == "speed" and p.get("devices"):
        parts.append(f"{p['devices']} device{'s' if p['devices'] != 1 else ''}")
    return parts


def _protocol_title(entry: Entry) -> str:
    """Every protocol field, for the hover text."""
    if entry.published:
        return f"{entry.protocol_note or ''} ({entry.source})"
    items = []
    for k, v in entry.protocol.items():
        if v is None:
            continue
        if k.endswith("sha256") and isinstance(v, str):
            v = v[:12] + "…"
        items.append(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}")
    return ", ".join(items)


def _safe_url(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parsed = urlparse(url.strip())
    except ValueError:
        return None
    return url.strip() if parsed.scheme in ("http", "https") and parsed.netloc else None


_IMAGE_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def _data_uri(path: Path | None) -> str | None:
    if path is None:
        return None
    data = path.read_bytes()
    for magic, mime in _IMAGE_MIME:
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


# ----------------------------------------------------------------------------------------------------------
# SVG plots

_FAMILY_COLORS = {"autoregressive": "#1f77b4", "latent": "#2ca02c", "gan": "#d62728", "baseline": "#7f7f7f"}


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
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


def _log_ticks(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    ticks = [10.0 ** k for k in range(a, b + 1)]
    if len(ticks) <= 3:  # a narrow range: add 2x and 5x so the axis is readable
        ticks = sorted({t * m for t in ticks for m in (1, 2, 5) if 10.0 ** a <= t * m <= 10.0 ** b})
    return ticks


def _tick_label(v: float, log: bool) -> str:
    return _count(v) if log else f"{v:g}"


@dataclass(frozen=True)
class _PlotSpec:
    title: str
    x: str  # "num_params", "train_time_h", "samples_per_s"
    y: str  # a METRICS key, or "nll" for whichever NLL the dataset is ranked by
    x_label: str
    log_x: bool


_PLOTS = (
    _PlotSpec("FID against parameter count", "num_params", "fid", "parameters (log scale)", True),
    _PlotSpec("FID against sampling speed", "samples_per_s", "fid", "samples / s (log scale)", True),
    _PlotSpec("NLL against training time", "train_time_h", "nll", "training time (hours)", False),
)


def _x_value(entry: Entry, x: str) -> float | None:
    if x == "train_time_h":
        t = (entry.record or {}).get("train_time_s")
        return t / 3600 if isinstance(t, (int, float)) and t > 0 else None
    return entry.value(x)


def _place_label(cx: float, cy: float, width: float, placed: list[tuple[float, float, float, float]],
                 frame: tuple[float, float, float, float]) -> tuple[float, float, str]:
    """A spot for a point's label that overlaps no earlier label or point, greedily; it is added to ``placed``."""
    height = 11.0
    candidates = []
    for dy in (-6, 13, -17, 24, -28, 35, -39):
        candidates += [(cx + 7, cy + dy, "start"), (cx - 7, cy + dy, "end")]
    best = None
    for lx, ly, anchor in candidates:
        x0 = lx if anchor == "start" else lx - width
        box = (x0, ly - height + 2, x0 + width, ly + 2)
        inside = box[0] >= frame[0] and box[2] <= frame[2] and box[1] >= frame[1] and box[3] <= frame[3]
        clear = not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed)
        if inside and clear:
            best = (lx, ly, anchor, box)
            break
        if best is None and inside:
            best = (lx, ly, anchor, box)  # overlapping, but at least inside the frame
    if best is None:
        lx, ly, anchor = candidates[0] if cx < (frame[0] + frame[2]) / 2 else candidates[1]
        x0 = lx if anchor == "start" else lx - width
        best = (lx, ly, anchor, (x0, ly - height + 2, x0 + width, ly + 2))
    placed.append(best[3])
    return best[0], best[1], best[2]


def _scatter_svg(spec: _PlotSpec, y_key: str, entries: Sequence[Entry]) -> str | None:
    points = [(x, e.value(y_key), e) for e in entries
              if (x := _x_value(e, spec.x)) is not None and e.value(y_key) is not None
              and (x > 0 or not spec.log_x)]
    if len(points) < 2:  # one point plots nothing the table does not say
        return None
    W, H, L, R, T, B = 400, 270, 58, 14, 30, 44
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if spec.log_x:
        xt = _log_ticks(min(xs), max(xs))
        fx = lambda v: math.log10(v)  # noqa: E731
    else:
        xt = _nice_ticks(min(0.0, min(xs)), max(xs))
        fx = lambda v: v  # noqa: E731
    yt = _nice_ticks(min(ys), max(ys))
    x0, x1 = fx(xt[0]), fx(xt[-1])
    y0, y1 = yt[0], yt[-1]
    px = lambda v: L + (fx(v) - x0) / ((x1 - x0) or 1) * (W - L - R)  # noqa: E731
    py = lambda v: H - B - (v - y0) / ((y1 - y0) or 1) * (H - T - B)  # noqa: E731
    metric = METRICS[y_key]
    y_label = f"{metric.label} ({'lower' if metric.lower_is_better else 'higher'} is better)"
    out = [f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{_e(spec.title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{W / 2}" y="18" class="ptitle" text-anchor="middle">{_e(spec.title)}</text>']
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{H - B + 14}" text-anchor="middle" class="tick">'
                   f'{_e(_tick_label(t, spec.log_x))}</text>')
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{t:g}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle" class="axis">{_e(spec.x_label)}</text>')
    out.append(f'<text transform="translate(14 {(T + H - B) / 2}) rotate(-90)" text-anchor="middle" '
               f'class="axis">{_e(y_label)}</text>')
    placed: list[tuple[float, float, float, float]] = [(px(x) - 5, py(y) - 5, px(x) + 5, py(y) + 5)
                                                        for x, y, _ in points]
    for x, y, e in sorted(points, key=lambda p: p[1]):
        cx, cy = px(x), py(y)
        color = _FAMILY_COLORS.get(e.family, "#333")
        lx, ly, anchor = _place_label(cx, cy, 5.6 * len(e.label), placed, (L, T, W - R, H - B))
        out.append(f'<g class="pt" data-family="{_e(e.family)}"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" '
                   f'fill="{color}"><title>{_e(e.label)}: {_e(_fmt_metric(y_key, y))}</title></circle>'
                   f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" class="plabel">'
                   f'{_e(e.label)}</text></g>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------
# Page

_CSS = """
:root { --fg:#1d2430; --muted:#6b7280; --line:#e5e7eb; --bg:#fff; --accent:#2f5fd0; --pub:#fbf7ec; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 0; background: #f6f7f9; }
header { background: #1d2430; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .sub { color: #c4cad6; font-size: 13px; }
main { padding: 18px 28px 40px; }
.controls { display: flex; gap: 18px; align-items: center; flex-wrap: wrap; margin-bottom: 14px; }
.controls label { font-weight: 600; }
.controls select { margin-left: 6px; font: inherit; padding: 3px 6px; }
section.dataset { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px;
                  margin-bottom: 22px; }
section.dataset h2 { margin: 0 0 2px; font-size: 19px; }
.ranked-by { color: var(--muted); margin: 0 0 10px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f1f3f7; font-weight: 600; white-space: nowrap; position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { background: #e4e8f0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
th.ranked, td.ranked { background: #eef3ff; }
td.num { text-align: right; min-width: 6.5em; max-width: 11em; }
td.num .v { white-space: nowrap; }
td.num .v { font-variant-numeric: tabular-nums; font-weight: 600; }
td .p, td .src { display: block; color: var(--muted); font-size: 11.5px; white-space: normal; }
td.num .p { text-align: right; }
td.who { min-width: 12em; max-width: 20em; }
tr.published td { background: var(--pub); }
tr.published td.ranked { background: #f3eedb; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px; margin-left: 4px;
         vertical-align: 1px; color: #fff; }
.badge.pub { background: #a07b1c; }
.fam { font-size: 12px; padding: 1px 7px; border-radius: 9px; color: #fff; white-space: nowrap; }
.fam-autoregressive { background: #1f77b4; } .fam-latent { background: #2ca02c; }
.fam-gan { background: #d62728; } .fam-baseline { background: #7f7f7f; }
.model { font-weight: 600; }
.run { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; overflow-wrap: anywhere; }
.rank { font-weight: 700; text-align: center; }
img.grid { height: 64px; image-rendering: pixelated; border: 1px solid var(--line); cursor: zoom-in;
           background: #000; }
details { font-size: 12px; color: var(--muted); }
details pre { white-space: pre-wrap; max-width: 40em; max-height: 16em; overflow: auto; background: #f6f7f9;
              padding: 6px; color: var(--fg); }
a { color: var(--accent); }
.plots { display: flex; flex-wrap: wrap; gap: 14px; margin-top: 14px; }
svg.plot { background: #fff; border: 1px solid var(--line); border-radius: 6px; }
svg .grid { stroke: #eceef2; } svg .frame { fill: none; stroke: #9aa1ad; }
svg .tick { font-size: 10px; fill: #555; } svg .axis { font-size: 11px; fill: #333; }
svg .ptitle { font-size: 13px; font-weight: 600; fill: #1d2430; } svg .plabel { font-size: 10px; fill: #333; }
.legend { display: flex; gap: 12px; font-size: 12px; color: var(--muted); margin-top: 6px; }
.legend span::before { content: ""; display: inline-block; width: 9px; height: 9px; border-radius: 50%;
                       margin-right: 4px; background: var(--c); }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 30px; }
#lightbox { position: fixed; inset: 0; background: rgba(0,0,0,.8); display: flex; align-items: center;
            justify-content: center; cursor: zoom-out; }
#lightbox[hidden] { display: none; }
#lightbox img { max-width: 92vw; max-height: 92vh; min-width: 50vmin; image-rendering: pixelated; }
.empty { color: var(--muted); font-style: italic; }
"""

_JS = r"""
(function () {
  "use strict";
  function cellKey(row, col) {
    var cell = row.children[col];
    return cell ? cell.getAttribute("data-sort") : "";
  }
  function sortTable(th) {
    var table = th.closest("table"), tbody = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-type") === "number";
    var current = th.getAttribute("aria-sort");
    var dir;
    if (current === "ascending") dir = "descending";
    else if (current === "descending") dir = "ascending";
    else dir = th.getAttribute("data-first") || "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.forEach(function (r, i) { r._pos = i; });
    rows.sort(function (a, b) {
      var x = cellKey(a, col), y = cellKey(b, col);
      var xe = x === null || x === "", ye = y === null || y === "";
      if (xe || ye) return xe === ye ? a._pos - b._pos : (xe ? 1 : -1);  // missing values last either way
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return c !== 0 ? sign * c : a._pos - b._pos;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  document.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () { sortTable(th); });
    th.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortTable(th); }
    });
  });
  var dsSel = document.getElementById("filter-dataset");
  var famSel = document.getElementById("filter-family");
  var pubBox = document.getElementById("filter-published");
  function applyFilters() {
    var ds = dsSel.value, fam = famSel.value, pub = pubBox.checked;
    document.querySelectorAll("section.dataset").forEach(function (s) {
      s.hidden = ds !== "" && s.getAttribute("data-dataset") !== ds;
    });
    document.querySelectorAll("tr.entry").forEach(function (r) {
      var okFam = fam === "" || r.getAttribute("data-family") === fam;
      var okPub = pub || !r.classList.contains("published");
      r.hidden = !(okFam && okPub);
    });
    document.querySelectorAll("g.pt").forEach(function (g) {
      g.style.display = fam === "" || g.getAttribute("data-family") === fam ? "" : "none";
    });
  }
  [dsSel, famSel, pubBox].forEach(function (el) { el.addEventListener("change", applyFilters); });
  var box = document.getElementById("lightbox"), big = box.querySelector("img");
  document.querySelectorAll("img.grid").forEach(function (img) {
    img.addEventListener("click", function () { big.src = img.src; big.alt = img.alt; box.hidden = false; });
  });
  box.addEventListener("click", function () { box.hidden = true; });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") box.hidden = true; });
})();
"""


def _th(label: str, *, numeric: bool, first: str = "ascending", ranked: str | None = None,
        cls: str = "", title: str = "") -> str:
    attrs = [f'class="sortable{(" " + cls) if cls else ""}"', 'tabindex="0"',
             f'data-type="{"number" if numeric else "text"}"', f'data-first="{first}"']
    if ranked:
        attrs.append(f'aria-sort="{ranked}"')
    if title:
        attrs.append(f'title="{_e(title)}"')
    return f"<th {' '.join(attrs)}>{_e(label)}</th>"


def _metric_cell(metric: Metric, entry: Entry, ranked: bool) -> str:
    v = entry.value(metric.key)
    cls = "num ranked" if ranked else "num"
    if v is None:
        return f'<td class="{cls}" data-sort=""></td>'
    text = _fmt_metric(metric.key, v)
    std = entry.value(metric.std_key) if metric.std_key else None
    if std is not None:
        text += f" ± {_fmt_metric(metric.key, std)}"
    return (f'<td class="{cls}" data-sort="{v!r}" title="{_e(_protocol_title(entry))}">'
            f'<span class="v">{_e(text)}</span><span class="p">'
            + " · ".join(f"<span>{_e(part)}</span>" for part in _protocol_parts(metric, entry))
            + "</span></td>")


def _details(entry: Entry) -> str:
    rec = entry.record or {}
    lines = [f"{k}: {rec.get(k)}" for k in ("checkpoint", "checkpoint_sha256", "git_commit", "created_at")
             if rec.get(k) is not None]
    lines.append("protocol: " + json.dumps(entry.protocol, indent=1, sort_keys=True))
    if rec.get("config") is not None:
        lines.append("config: " + json.dumps(rec["config"], indent=1, sort_keys=True))
    return f"<details><summary>details</summary><pre>{_e(chr(10).join(lines))}</pre></details>"


def _row(rank_: int | None, entry: Entry, metric_cols: list[Metric], ranked_key: str,
         show_params: bool, show_time: bool) -> str:
    cls = "entry published" if entry.published else "entry"
    cells = [f'<td class="rank" data-sort="{"" if rank_ is None else rank_}">{"" if rank_ is None else rank_}</td>']
    if entry.published:
        model = (f'<span class="model">{_e(entry.model)}</span><span class="badge pub">published</span>'
                 f'<span class="src">{_e(entry.source)}{(" — " + _e(entry.note)) if entry.note else ""}</span>')
    else:
        model = (f'<span class="model">{_e(entry.model)}</span>'
                 f'<span class="run src">{_e(entry.run_name)}</span>{_details(entry)}')
    cells.append(f'<td class="who" data-sort="{_e(entry.label.lower())}">{model}</td>')
    cells.append(f'<td data-sort="{_e(entry.family)}"><span class="fam fam-{_e(entry.family)}">'
                 f'{_e(entry.family)}</span></td>')
    cells += [_metric_cell(m, entry, m.key == ranked_key) for m in metric_cols]
    if show_params:
        n = entry.value("num_params")
        cells.append(f'<td class="num" data-sort="{"" if n is None else repr(n)}">{_e(_fmt_params(n))}</td>')
    if show_time:
        t = (entry.record or {}).get("train_time_s")
        cells.append(f'<td class="num" data-sort="{"" if t is None else repr(float(t))}">'
                     f'{_e(_fmt_duration(t))}</td>')
    uri = _data_uri(entry.sample_grid)
    if uri:
        cells.append(f'<td class="samples"><img class="grid" src="{uri}" alt="{_e("samples from " + entry.label)}" '
                     f'title="{_e(entry.label)} (click to enlarge)"></td>')
    elif entry.record and entry.record.get("sample_grid"):
        cells.append(f'<td class="samples empty" title="{_e(entry.record["sample_grid"])}">grid not found</td>')
    else:
        cells.append('<td class="samples"></td>')
    url = _safe_url((entry.record or {}).get("wandb_url"))
    cells.append(f'<td><a href="{_e(url)}" target="_blank" rel="noopener noreferrer">W&amp;B</a></td>' if url
                 else "<td></td>")
    return (f'<tr class="{cls}" data-family="{_e(entry.family)}" data-run="{_e(entry.label)}">'
            + "".join(cells) + "</tr>")


def _dataset_section(dataset: str, entries: Sequence[Entry], preferred: str | None) -> str:
    ranked_key = choose_metric(entries, preferred)
    ordered = rank(entries, ranked_key) if ranked_key else [(None, e) for e in entries]
    metric_cols = [m for m in METRICS.values() if any(e.value(m.key) is not None for e in entries)]
    # NLL in nats and in bits/dim are one number in two units: show one column unless some row has only the other.
    for a, b in (("nll_nats", "nll_bpd"), ("nll_bpd", "nll_nats")):
        shown = {m.key for m in metric_cols}
        if a in shown and b in shown and a != ranked_key and all(
                e.value(b) is not None for e in entries if e.value(a) is not None):
            metric_cols = [m for m in metric_cols if m.key != a]
    if ranked_key:  # the ranked metric first
        metric_cols.sort(key=lambda m: m.key != ranked_key)
    show_params = any(e.value("num_params") is not None for e in entries)
    show_time = any((e.record or {}).get("train_time_s") is not None for e in entries)

    head = [_th("#", numeric=True, title="rank by the ranked metric"),
            _th("Model / run", numeric=False), _th("Family", numeric=False)]
    for m in metric_cols:
        better = "ascending" if m.lower_is_better else "descending"
        is_ranked = m.key == ranked_key
        # The table starts sorted by the ranked column, so its header says so and a first click reverses it.
        head.append(_th(m.label, numeric=True, first=better, ranked=better if is_ranked else None,
                        cls="ranked" if is_ranked else "",
                        title=f"{'lower' if m.lower_is_better else 'higher'} is better"))
    if show_params:
        head.append(_th("Params", numeric=True))
    if show_time:
        head.append(_th("Train time", numeric=True))
    head.append("<th>Samples</th><th>W&amp;B</th>")

    rows = [_row(r, e, metric_cols, ranked_key or "", show_params, show_time) for r, e in ordered]
    if ranked_key:
        m = METRICS[ranked_key]
        by = (f"Ranked by <b>{_e(m.label)}</b> ({'lower' if m.lower_is_better else 'higher'} is better); "
              f"rows without it are listed last. Click a column header to sort.")
    else:
        by = "No metric to rank by yet."
    n_runs = sum(not e.published for e in entries)
    n_pub = len(entries) - n_runs

    plots = []
    nll_key = ("nll_bpd" if sum(e.value("nll_bpd") is not None for e in entries)
               >= sum(e.value("nll_nats") is not None for e in entries) else "nll_nats")
    for spec in _PLOTS:
        svg = _scatter_svg(spec, nll_key if spec.y == "nll" else spec.y, [e for e in entries if not e.published])
        if svg:
            plots.append(svg)
    families = sorted({e.family for e in entries if not e.published})
    legend = ('<div class="legend">' + "".join(
        f'<span style="--c:{_FAMILY_COLORS.get(f, "#333")}">{_e(f)}</span>' for f in families) + "</div>"
              if plots else "")
    plots_html = f'<div class="plots">{"".join(plots)}</div>{legend}' if plots else ""

    return (f'<section class="dataset" data-dataset="{_e(dataset)}" id="ds-{_e(dataset)}">'
            f"<h2>{_e(dataset)}</h2>"
            f'<p class="ranked-by">{n_runs} run{"s" if n_runs != 1 else ""}, {n_pub} published. {by}</p>'
            f'<div class="table-wrap"><table class="board"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{plots_html}</section>')


def render_dashboard(entries: Sequence[Entry], *, metric: str | None = None, title: str = "lightning_gen leaderboard",
                     source: str | None = None, generated_at: datetime | None = None) -> str:
    """The whole page as one HTML string; ``metric`` ranks every dataset that has it (see :func:`choose_metric`)."""
    if metric is not None and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {tuple(METRICS)}")
    generated_at = generated_at or datetime.now(timezone.utc)
    # Datasets with our own runs first (alphabetical), then those with only published numbers.
    datasets = sorted({e.dataset for e in entries}, key=lambda d: (all(e.published for e in entries
                                                                        if e.dataset == d), d))
    sections = [_dataset_section(d, [e for e in entries if e.dataset == d], metric) for d in datasets]
    families = [f for f in FAMILIES if any(e.family == f for e in entries)]
    families += sorted({e.family for e in entries} - set(families))
    n_runs = sum(not e.published for e in entries)
    ds_opts = "".join(f'<option value="{_e(d)}">{_e(d)}</option>' for d in datasets)
    fam_opts = "".join(f'<option value="{_e(f)}">{_e(f)}</option>' for f in families)
    sub = f"{n_runs} evaluated run{'s' if n_runs != 1 else ''} · generated {generated_at:%Y-%m-%d %H:%M UTC}"
    if source:
        sub += f" · from {source}"
    body = "".join(sections) or '<p class="empty">No records yet: run the benchmark, or pass --import.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>{_e(title)}</h1><div class="sub">{_e(sub)}</div></header>
<main>
<div class="controls">
<label>Dataset<select id="filter-dataset"><option value="">all</option>{ds_opts}</select></label>
<label>Family<select id="filter-family"><option value="">all</option>{fam_opts}</select></label>
<label><input type="checkbox" id="filter-published" checked> show published results</label>
</div>
{body}
</main>
<footer>Numbers are comparable only under the same protocol, printed under each value (feature extractor and sample
count for FID / IS / KID, estimator for NLL). Rows marked <i>published</i> are figures from papers and public
benchmark tables with their sources, not runs of this code.</footer>
<div id="lightbox" hidden><img alt=""></div>
<script>{_JS}</script>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------------------
# W&B

WANDB_COLUMNS = ("dataset", "rank", "published", "run_name", "model", "family", *METRICS, "is_std", "kid_std",
                 "num_params", "train_time_s", "protocol", "source", "wandb_url")


def _ranked_by_dataset(entries: Sequence[Entry], metric: str | None) -> list[tuple[int | None, Entry]]:
    out: list[tuple[int | None, Entry]] = []
    for dataset in sorted({e.dataset for e in entries}):
        group = [e for e in entries if e.dataset == dataset]
        key = choose_metric(group, metric)
        out += rank(group, key) if key else [(None, e) for e in group]
    return out


def wandb_table_rows(entries: Sequence[Entry], metric: str | None = None) -> list[list[Any]]:
    """The board as rows of :data:`WANDB_COLUMNS`, each dataset ranked as on the page."""
    rows = []
    for r, e in _ranked_by_dataset(entries, metric):
        protocol = e.protocol_note if e.published else json.dumps(e.protocol, sort_keys=True)
        rows.append([e.dataset, r, e.published, e.run_name, e.model, e.family,
                     *(e.value(k) for k in METRICS), e.value("is_std"), e.value("kid_std"),
                     e.value("num_params"), (e.record or {}).get("train_time_s"), protocol, e.source,
                     _safe_url((e.record or {}).get("wandb_url"))])
    return rows


def log_to_wandb(entries: Sequence[Entry], *, metric: str | None = None, project: str = "lightning_gen",
                 name: str | None = None, dir: str | Path | None = None) -> str:
    """Log the board as a ``wandb.Table`` under the key ``leaderboard``, with each run's sample grid as an image
    column; return the run's local folder.

    The run's mode follows ``WANDB_MODE`` as W&B always does: ``offline`` writes a local run that
    ``wandb sync`` can upload later, and needs no credentials; ``disabled`` logs nothing.
    """
    import wandb

    ranked = [e for _, e in _ranked_by_dataset(entries, metric)]
    table = wandb.Table(columns=[*WANDB_COLUMNS, "samples"])
    for row, entry in zip(wandb_table_rows(entries, metric), ranked):
        image = wandb.Image(str(entry.sample_grid)) if entry.sample_grid is not None else None
        table.add_data(*row, image)
    run = wandb.init(project=project, name=name, job_type="leaderboard", dir=str(dir) if dir else None,
                     config={"metric": metric or "auto"})
    try:
        run.log({"leaderboard": table})
        run.summary["num_runs"] = sum(not e.published for e in entries)
        run_dir = str(Path(run.dir).parent) if run.dir else ""
    finally:
        run.finish()
    return run_dir


# ----------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning_gen leaderboard",
        description="Build the static HTML leaderboard from the results database (and optionally log it to W&B).")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="SQLite results database (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="HTML file to write (default: %(default)s)")
    p.add_argument("--metric", choices=tuple(METRICS), default=None,
                   help="metric to rank by where a dataset has it (default: FID, else NLL, else IS/KID, ...)")
    p.add_argument("--import", dest="imports", type=Path, nargs="+", default=[], metavar="FILE",
                   help="add records from .json / .jsonl / .csv files to the database first")
    p.add_argument("--export", type=Path, default=None, metavar="FILE",
                   help="also write every stored record to FILE (.json or .csv)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder that relative sample-grid paths in records are relative to (default: the working "
                        "directory, then the database's folder and its parent)")
    p.add_argument("--all-evaluations", action="store_true",
                   help="show every stored evaluation, not just the newest per run, dataset and protocol")
    p.add_argument("--no-published", action="store_true", help="leave out the published reference numbers")
    p.add_argument("--title", default="lightning_gen leaderboard")
    p.add_argument("--wandb", action="store_true",
                   help="also log the board as a wandb.Table (mode from WANDB_MODE; offline needs no login)")
    p.add_argument("--wandb-project", default=os.environ.get("WANDB_PROJECT", "lightning_gen"))
    p.add_argument("--wandb-name", default=None, help="W&B run name (default: W&B chooses)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m lightning_gen leaderboard``: build ``--out`` from ``--db``; return the exit status."""
    args = _parser().parse_args(argv)
    if args.export is not None and args.export.suffix.lower() not in (".json", ".csv"):
        print(f"error: --export must end in .json or .csv, got {args.export}", file=sys.stderr)
        return 2

    records: list[dict[str, Any]] = []
    if args.imports or args.db.exists():
        with Store(args.db) as store:
            for path in args.imports:
                added = store.add_many(read_records(path))
                print(f"imported {added} new record(s) from {path}")
            if args.export is not None:
                n = store.export_csv(args.export) if args.export.suffix.lower() == ".csv" \
                    else store.export_json(args.export)
                print(f"exported {n} record(s) to {args.export}")
            records = store.records(latest_only=not args.all_evaluations)
    else:
        print(f"warning: no results database at {args.db}; the board shows published numbers only",
              file=sys.stderr)

    # The benchmark writes grids next to the database and records their path as it was given (often relative).
    roots = [r for r in (args.root, args.db.parent, args.db.parent.parent) if r is not None]
    entries = build_entries(records, include_published=not args.no_published, roots=roots)
    page = render_dashboard(entries, metric=args.metric, title=args.title, source=str(args.db))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(records)} run(s))")

    if args.wandb:
        try:
            run_dir = log_to_wandb(entries, metric=args.metric, project=args.wandb_project, name=args.wandb_name)
        except Exception as err:  # noqa: BLE001 - report W&B failures without losing the page already written
            print(f"error: logging to W&B failed: {err}\n(set WANDB_MODE=offline to log without an account)",
                  file=sys.stderr)
            return 1
        print(f"logged leaderboard table to W&B ({run_dir})")
    return 0
