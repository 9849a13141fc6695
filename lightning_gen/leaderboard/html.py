"""The leaderboard page: one self-contained HTML file (inline CSS, JS, SVG plots and sample grids; no network).

Per dataset, a table ranked by one metric with the evaluation protocol printed beside every number, the published
numbers from :mod:`~lightning_gen.leaderboard.references` marked as such, each run's sample grid embedded as a
data URI and a link to its W&B run, followed by the scatter plots of :mod:`~lightning_gen.leaderboard.plots`.
Columns sort on click; selects filter by dataset and model family. The style sheet and the script are the package
files ``static/dashboard.css`` and ``static/dashboard.js``, read with :mod:`importlib.resources` and inlined.

Everything that comes from a record (run names, configs, paths, URLs) is HTML-escaped, and a URL becomes a link
only if it is http(s), so a run called ``<script>alert(1)</script>`` is shown as text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path

from lightning_gen.leaderboard.formatting import esc, fmt_count, fmt_duration, fmt_metric, fmt_params, safe_url
from lightning_gen.leaderboard.plots import FAMILY_COLORS, PLOTS, family_color, scatter_svg
from lightning_gen.leaderboard.ranking import METRICS, Entry, Metric, choose_metric, rank

__all__ = ["STATIC_FILES", "render_dashboard", "static_text"]

#: The page's style sheet and script, package files under ``lightning_gen/leaderboard/static/``.
STATIC_FILES = ("dashboard.css", "dashboard.js")


@cache
def static_text(name: str) -> str:
    """The text of ``static/<name>``, read from the installed package (a wheel or an editable install alike).

    Raises ``ValueError`` if the file could end the inline ``<style>`` or ``<script>`` element it is put in.
    """
    text = (files("lightning_gen.leaderboard") / "static" / name).read_text(encoding="utf-8")
    if "</style" in text.lower() or "</script" in text.lower():
        raise ValueError(f"static/{name} contains a closing </style or </script and cannot be inlined")
    return text


# ----------------------------------------------------------------------------------------------------------
# What is printed beside a number, and the sample grids


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
            parts.append(f"{fmt_count(p['num_samples'])} samples{vs}")
    elif metric.kind == "likelihood":
        parts.append(str(p.get("nll_estimator") or "estimator not recorded"))
        if p.get("num_test_images"):
            parts.append(f"{fmt_count(p['num_test_images'])} test images")
    elif metric.kind == "probe":  # a linear classifier on the model's own features, not the extractor's
        parts.append("linear probe")
        if p.get("num_test_images"):
            parts.append(f"{fmt_count(p['num_test_images'])} test images")
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


_IMAGE_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def _data_uri(path: Path | None) -> str | None:
    """A PNG or JPEG file as a ``data:`` URI (``None`` for anything else), so the page needs no other file."""
    if path is None:
        return None
    data = path.read_bytes()
    for magic, mime in _IMAGE_MIME:
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


# ----------------------------------------------------------------------------------------------------------
# Table


def _th(label: str, *, numeric: bool, first: str = "ascending", ranked: str | None = None,
        cls: str = "", title: str = "") -> str:
    attrs = [f'class="sortable{(" " + cls) if cls else ""}"', 'tabindex="0"',
             f'data-type="{"number" if numeric else "text"}"', f'data-first="{first}"']
    if ranked:
        attrs.append(f'aria-sort="{ranked}"')
    if title:
        attrs.append(f'title="{esc(title)}"')
    return f"<th {' '.join(attrs)}>{esc(label)}</th>"


def _metric_cell(metric: Metric, entry: Entry, ranked: bool) -> str:
    v = entry.value(metric.key)
    cls = "num ranked" if ranked else "num"
    if v is None:
        return f'<td class="{cls}" data-sort=""></td>'
    text = fmt_metric(metric.key, v)
    std = entry.value(metric.std_key) if metric.std_key else None
    if std is not None:
        text += f" ± {fmt_metric(metric.key, std)}"
    return (f'<td class="{cls}" data-sort="{v!r}" title="{esc(_protocol_title(entry))}">'
            f'<span class="v">{esc(text)}</span><span class="p">'
            + " · ".join(f"<span>{esc(part)}</span>" for part in _protocol_parts(metric, entry))
            + "</span></td>")


def _details(entry: Entry) -> str:
    rec = entry.record or {}
    lines = [f"{k}: {rec.get(k)}" for k in ("checkpoint", "checkpoint_sha256", "git_commit", "created_at")
             if rec.get(k) is not None]
    lines.append("protocol: " + json.dumps(entry.protocol, indent=1, sort_keys=True))
    if rec.get("config") is not None:
        lines.append("config: " + json.dumps(rec["config"], indent=1, sort_keys=True))
    return f"<details><summary>details</summary><pre>{esc(chr(10).join(lines))}</pre></details>"


def _row(rank_: int | None, entry: Entry, metric_cols: list[Metric], ranked_key: str,
         show_params: bool, show_time: bool) -> str:
    cls = "entry published" if entry.published else "entry"
    cells = [f'<td class="rank" data-sort="{"" if rank_ is None else rank_}">{"" if rank_ is None else rank_}</td>']
    if entry.published:
        model = (f'<span class="model">{esc(entry.model)}</span><span class="badge pub">published</span>'
                 f'<span class="src">{esc(entry.source)}{(" — " + esc(entry.note)) if entry.note else ""}</span>')
    else:
        model = (f'<span class="model">{esc(entry.model)}</span>'
                 f'<span class="run src">{esc(entry.run_name)}</span>{_details(entry)}')
    cells.append(f'<td class="who" data-sort="{esc(entry.label.lower())}">{model}</td>')
    # The style sheet colours the known families' badges; any other family gets its colour inline.
    colour = "" if entry.family in FAMILY_COLORS else f' style="background:{family_color(entry.family)}"'
    cells.append(f'<td data-sort="{esc(entry.family)}"><span class="fam fam-{esc(entry.family)}"{colour}>'
                 f'{esc(entry.family)}</span></td>')
    cells += [_metric_cell(m, entry, m.key == ranked_key) for m in metric_cols]
    if show_params:
        n = entry.value("num_params")
        cells.append(f'<td class="num" data-sort="{"" if n is None else repr(n)}">{esc(fmt_params(n))}</td>')
    if show_time:
        t = (entry.record or {}).get("train_time_s")
        cells.append(f'<td class="num" data-sort="{"" if t is None else repr(float(t))}">'
                     f'{esc(fmt_duration(t))}</td>')
    uri = _data_uri(entry.sample_grid)
    if uri:
        cells.append(f'<td class="samples"><img class="grid" src="{uri}" alt="{esc("samples from " + entry.label)}" '
                     f'title="{esc(entry.label)} (click to enlarge)"></td>')
    elif entry.record and entry.record.get("sample_grid"):
        cells.append(f'<td class="samples empty" title="{esc(entry.record["sample_grid"])}">grid not found</td>')
    else:
        cells.append('<td class="samples"></td>')
    url = safe_url((entry.record or {}).get("wandb_url"))
    cells.append(f'<td><a href="{esc(url)}" target="_blank" rel="noopener noreferrer">W&amp;B</a></td>' if url
                 else "<td></td>")
    return (f'<tr class="{cls}" data-family="{esc(entry.family)}" data-run="{esc(entry.label)}">'
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
        by = (f"Ranked by <b>{esc(m.label)}</b> ({'lower' if m.lower_is_better else 'higher'} is better); "
              f"rows without it are listed last. Click a column header to sort.")
    else:
        by = "No metric to rank by yet."
    n_runs = sum(not e.published for e in entries)
    n_pub = len(entries) - n_runs

    plots = []
    nll_key = ("nll_bpd" if sum(e.value("nll_bpd") is not None for e in entries)
               >= sum(e.value("nll_nats") is not None for e in entries) else "nll_nats")
    for spec in PLOTS:
        svg = scatter_svg(spec, nll_key if spec.y == "nll" else spec.y, [e for e in entries if not e.published])
        if svg:
            plots.append(svg)
    families = sorted({e.family for e in entries if not e.published})
    legend = ('<div class="legend">' + "".join(
        f'<span style="--c:{family_color(f)}">{esc(f)}</span>' for f in families) + "</div>"
              if plots else "")
    plots_html = f'<div class="plots">{"".join(plots)}</div>{legend}' if plots else ""

    return (f'<section class="dataset" data-dataset="{esc(dataset)}" id="ds-{esc(dataset)}">'
            f"<h2>{esc(dataset)}</h2>"
            f'<p class="ranked-by">{n_runs} run{"s" if n_runs != 1 else ""}, {n_pub} published. {by}</p>'
            f'<div class="table-wrap"><table class="board"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{plots_html}</section>')


# ----------------------------------------------------------------------------------------------------------
# Page


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
    families = sorted({e.family for e in entries})
    n_runs = sum(not e.published for e in entries)
    ds_opts = "".join(f'<option value="{esc(d)}">{esc(d)}</option>' for d in datasets)
    fam_opts = "".join(f'<option value="{esc(f)}">{esc(f)}</option>' for f in families)
    sub = f"{n_runs} evaluated run{'s' if n_runs != 1 else ''} · generated {generated_at:%Y-%m-%d %H:%M UTC}"
    if source:
        sub += f" · from {source}"
    body = "".join(sections) or '<p class="empty">No records yet: run the benchmark, or pass --import.</p>'
    css, js = static_text("dashboard.css"), static_text("dashboard.js")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{esc(title)}</title>
<style>
{css}</style>
</head>
<body>
<header><h1>{esc(title)}</h1><div class="sub">{esc(sub)}</div></header>
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
<script>
{js}</script>
</body>
</html>
"""
