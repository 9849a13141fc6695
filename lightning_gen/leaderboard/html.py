"""The leaderboard page: one self-contained HTML file (inline CSS, JS, SVG plots and sample grids; no network).

Per dataset id, a table ranked by its primary metric (the likelihood wherever an entry has one, else FID; see
:func:`~lightning_gen.leaderboard.ranking.choose_metric`) with the evaluation protocol printed beside every number,
the published numbers from :mod:`~lightning_gen.leaderboard.references` marked as such, each run's sample grid
embedded as a data URI and a link to its W&B run, followed by the scatter plots of
:mod:`~lightning_gen.leaderboard.plots`.
A run's sample cell shows the first row of its grid at three times (or more) its native size, pixels kept sharp,
so a digit can be read without a click; a click shows the whole grid. Under each run, a full-width row holds the
samples over training (a few of the grids the run saved while it trained, with their steps) and the details
panel (metrics, checkpoint, protocol, config), which wraps instead of scrolling.
Runs that differ only in their seed are one row, mean ± std over the seeds
(:func:`~lightning_gen.leaderboard.ranking.aggregate_seeds`), whose full-width row holds the single runs behind a
click; a real-data anchor (family ``data``) is a tinted, unranked "real data" row; an FID whose record says
``protocol.fid_biased`` carries a "biased" marker whose tooltip says why. Tied rows share a rank, printed ``=N``
(:func:`~lightning_gen.leaderboard.ranking.rank`: two runs on the same test images by their paired NLL difference,
other rows by overlapping value ± spread intervals); each ± says what it is (std over seeds, SE over test images,
std over draws, or within one draw), and a likelihood section shows each run's paired difference to its leader
(``Δ leader``). A data set's class-conditional rows are a section of their own, marked.
Columns sort on click; selects filter by dataset and model family. The style sheet and the script are the package
files ``static/dashboard.css`` and ``static/dashboard.js``, read with :mod:`importlib.resources` and inlined.

Everything that comes from a record (run names, configs, paths, URLs) is HTML-escaped, and a URL becomes a link
only if it is http(s), so a run called ``<script>alert(1)</script>`` is shown as text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files

from lightning_gen.leaderboard.formatting import esc, fmt_count, fmt_duration, fmt_metric, fmt_params
from lightning_gen.leaderboard.paired import PAIRED_RULE
from lightning_gen.leaderboard.panels import details, wandb_cell
from lightning_gen.leaderboard.plots import FAMILY_COLORS, PLOTS, family_color, scatter_svg
from lightning_gen.leaderboard.ranking import (METRICS, Entry, Metric, choose_metric, leader_difference, rank,
                                               section_key, sections, spread, spread_kind)
from lightning_gen.leaderboard.sections import missing_anchors
from lightning_gen.leaderboard.thumbnails import STRIP_STEPS, THUMB_MIN_SCALE, data_uri, read_bytes, strip, thumbnail

__all__ = ["STATIC_FILES", "STRIP_STEPS", "THUMB_MIN_SCALE", "render_dashboard", "static_text"]

_wandb_cell = wandb_cell  # its name before the cells moved to .panels

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
    elif metric.kind == "speed":
        if p.get("sampler"):  # what a sample costs: a diffusion model's sampler and steps, a Gibbs chain's length
            parts.append(str(p["sampler"]))
        if p.get("devices"):
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


#: The tooltip of the marker on an FID whose record says ``protocol.fid_biased``.
BIASED_FID_TITLE = ("biased: no more images than feature dimensions (generated or reference set), so the covariance "
                    "is singular and this FID is biased upwards; not comparable with FIDs from more samples")


def _metric_cell(metric: Metric, entry: Entry, ranked: bool) -> str:
    v = entry.value(metric.key)
    cls = "num ranked" if ranked else "num"
    if v is None:
        return f'<td class="{cls}" data-sort=""></td>'
    text = fmt_metric(metric.key, v)
    # A seed aggregate shows the spread over its seeds; a single run the metric's own spread (ranking.spread).
    std = spread(entry, metric.key)
    if std is not None:  # a narrow column breaks before the ±, never inside a number
        text += f" ±\u00a0{fmt_metric(metric.key, std)}"
    parts = _protocol_parts(metric, entry)
    kind = spread_kind(entry, metric.key) if std is not None else None
    if kind:  # which ± this is: over seeds, over test images, over draws, or within one draw
        parts.append(f"± {kind}" if not entry.seeds else f"mean ± {kind}")
    marker = ""
    if metric.key == "fid" and entry.protocol.get("fid_biased"):
        marker = f'<span class="biased" title="{esc(BIASED_FID_TITLE)}">biased</span>'
    return (f'<td class="{cls}" data-sort="{v!r}" title="{esc(_protocol_title(entry))}">'
            f'<span class="v">{marker}{esc(text)}</span><span class="p">'
            + " · ".join(f"<span>{esc(part)}</span>" for part in parts)
            + "</span></td>")


def _seeds_table(entry: Entry, metric_cols: list[Metric], ranked_key: str, show_params: bool,
                 show_time: bool) -> str:
    """The single runs of a seed aggregate, one click away: a table with the board's columns, each run with its
    own details."""
    rows = "".join(_row(None, e, metric_cols, ranked_key, show_params, show_time) for e in entry.seeds)
    return (f'<details class="seeds"><summary>{len(entry.seeds)} seeds: the single runs</summary>'
            f'<table class="board seeds-table"><tbody>{rows}</tbody></table></details>')


#: The tooltip of a shared rank.
TIE_TITLE = ("tied with the first row of this rank, so their order is inside the noise: " + PAIRED_RULE
             + "; otherwise (a published number, a seed aggregate, no per-image values) when their intervals "
             "(value ± the spread shown) overlap")
#: The header tooltip of the difference-to-leader column.
DIFF_TITLE = ("this row's NLL minus the section leader's, mean ± standard error of the per-image differences on the "
              "same test images (paired); blank where the two cannot be paired (published, seed aggregate, "
              "another test split)")


def _diff_cell(diff: tuple[float, float] | None, key: str) -> str:
    if diff is None:
        return '<td class="num diff" data-sort=""></td>'
    digits = 4 if key == "nll_bpd" else 3
    return (f'<td class="num diff" data-sort="{diff[0]!r}" title="{esc(DIFF_TITLE)}">'
            f'{diff[0]:+.{digits}f} ±\u00a0{diff[1]:.{digits}f}</td>')


def _row(rank_: int | None, entry: Entry, metric_cols: list[Metric], ranked_key: str,
         show_params: bool, show_time: bool, tied: bool = False, diff: tuple[float, float] | None | bool = False,
         ) -> str:
    cls = "entry published" if entry.published else "entry anchor has-more" if entry.anchor else "entry has-more"
    if rank_ is None:
        cells = ['<td class="rank" data-sort=""></td>']
    elif tied:
        cells = [f'<td class="rank tie" data-sort="{rank_}" title="{esc(TIE_TITLE)}">={rank_}</td>']
    else:
        cells = [f'<td class="rank" data-sort="{rank_}">{rank_}</td>']
    if entry.published:
        model = (f'<span class="model">{esc(entry.model)}</span><span class="badge pub">published</span>'
                 f'<span class="src">{esc(entry.source)}{(" — " + esc(entry.note)) if entry.note else ""}</span>')
    elif entry.anchor:
        model = (f'<span class="model">{esc(entry.model)}</span><span class="badge real" title="real images scored '
                 f'as samples under the same protocol: the score of a perfect model at this sample count; not '
                 f'ranked">real data</span><span class="run src">{esc(entry.run_name)}</span>')
    elif entry.seeds:
        model = (f'<span class="model">{esc(entry.model)}</span><span class="badge seeds">{len(entry.seeds)} seeds'
                 f'</span><span class="run src">{esc(entry.run_name)}</span>')
    else:
        model = (f'<span class="model">{esc(entry.model)}</span>'
                 f'<span class="run src">{esc(entry.run_name)}</span>')
    cells.append(f'<td class="who" data-sort="{esc(entry.label.lower())}">{model}</td>')
    # The style sheet colours the known families' badges; any other family gets its colour inline.
    colour = "" if entry.family in FAMILY_COLORS else f' style="background:{family_color(entry.family)}"'
    cells.append(f'<td data-sort="{esc(entry.family)}"><span class="fam fam-{esc(entry.family)}"{colour}>'
                 f'{esc(entry.family)}</span></td>')
    cells += [_metric_cell(m, entry, m.key == ranked_key) for m in metric_cols]
    if diff is not False:  # the section shows differences to its leader
        cells.insert(4, _diff_cell(diff, ranked_key))
    if show_params:
        n = entry.value("num_params")
        cells.append(f'<td class="num" data-sort="{"" if n is None else repr(n)}">{esc(fmt_params(n))}</td>')
    if show_time:
        t = (entry.record or {}).get("train_time_s")
        cells.append(f'<td class="num" data-sort="{"" if t is None else repr(float(t))}">'
                     f'{esc(fmt_duration(t))}</td>')
    data = read_bytes(entry.sample_grid)
    uri = data_uri(data) if data else None
    if uri:
        shape = (entry.record or {}).get("image_shape")
        cells.append(f'<td class="samples">{thumbnail(data, uri, shape, "samples from " + entry.label, entry.label)}'
                     "</td>")
    elif entry.record and entry.record.get("sample_grid"):
        cells.append(f'<td class="samples empty" title="{esc(entry.record["sample_grid"])}">grid not found</td>')
    else:
        cells.append('<td class="samples"></td>')
    cells.append(wandb_cell((entry.record or {}).get("wandb_url")))
    row = (f'<tr class="{cls}" data-family="{esc(entry.family)}" data-run="{esc(entry.label)}">'
           + "".join(cells) + "</tr>")
    if entry.published:
        return row
    # The strip and the details (a seed aggregate: its single runs) get the table's whole width, in a row the script
    # keeps under this one.
    more = (_seeds_table(entry, metric_cols, ranked_key, show_params, show_time) if entry.seeds
            else strip(entry) + details(entry))
    return (row + f'<tr class="more" data-family="{esc(entry.family)}" data-run="{esc(entry.label)}"><td></td>'
            f'<td colspan="{len(cells) - 1}">{more}</td></tr>')


def _ranked_by(ranked_key: str | None, preferred: str | None) -> str:
    """The sentence under a section's heading: the metric it is ranked by, and why that one."""
    if not ranked_key:
        return "No metric to rank by yet."
    m = METRICS[ranked_key]
    if ranked_key == preferred:
        why = "the metric asked for"
    elif m.kind == "likelihood":
        why = "the likelihood, which ranks first wherever an entry reports one"
    elif m.kind == "quality":
        why = "no entry reports a likelihood"
    else:
        why = "no entry reports a likelihood or a sample-quality score"
    rule = ("two of our runs on the same test images tie when the 95% interval of their paired per-image "
            "difference contains 0 (<i>Δ leader</i>), other rows when their value ± spread intervals overlap"
            if m.kind == "likelihood" else "their value ± spread intervals overlap")
    return (f"Ranked by <b>{esc(m.label)}</b> ({'lower' if m.lower_is_better else 'higher'} is better; {why}); "
            f"rows without it are listed last; <b>=N</b> marks rows tied at rank N ({rule}). "
            f"Click a column header to sort.")


def _dataset_section(dataset_id: str, entries: Sequence[Entry], preferred: str | None,
                     conditional: bool = False, source: str | None = None) -> str:
    ranked_key = choose_metric(entries, preferred)
    ordered = rank(entries, ranked_key) if ranked_key else [(None, e) for e in entries]
    diffs = {id(e): leader_difference(e, ordered, ranked_key) for _, e in ordered} if ranked_key else {}
    show_diff = any(d is not None for d in diffs.values())
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
        if is_ranked and show_diff:
            head.append(_th("Δ leader", numeric=True, title=DIFF_TITLE))
    if show_params:
        head.append(_th("Params", numeric=True))
    if show_time:
        head.append(_th("Train time", numeric=True))
    head.append("<th>Samples</th><th>W&amp;B</th>")

    shared = Counter(r for r, _ in ordered if r is not None)
    rows = [_row(r, e, metric_cols, ranked_key or "", show_params, show_time, tied=shared[r] > 1,
                 diff=diffs.get(id(e)) if show_diff else False) for r, e in ordered]
    by = _ranked_by(ranked_key, preferred)
    n_runs = sum(max(1, len(e.seeds)) for e in entries if not e.published and not e.anchor)
    n_pub = sum(e.published for e in entries)

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

    classes = ", ".join(sorted({e.dataset for e in entries}))
    anchor = missing_anchors(entries, source).get(dataset_id) if not conditional else None
    hint = (f'<p class="hint">No real-data row yet (real training images scored like samples: what a perfect model '
            f'would get). Add one: <code>{esc(anchor)}</code></p>' if anchor else "")
    cond = ('<span class="badge cond" title="class-conditional models: the NLL is log p(x|y) given the test '
            'labels and the samples follow the label distribution in their protocol; ranked apart from '
            'unconditional models">class-conditional</span>' if conditional else "")
    return (f'<section class="dataset" data-dataset="{esc(dataset_id)}" '
            f'id="ds-{esc(dataset_id)}{"-conditional" if conditional else ""}">'
            f'<h2>{esc(dataset_id)}{cond}<span class="ds-class">{esc(classes)}</span></h2>'
            f'<p class="ranked-by">{n_runs} run{"s" if n_runs != 1 else ""}, {n_pub} published. {by}</p>{hint}'
            f'<div class="table-wrap"><table class="board"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{plots_html}</section>')


# ----------------------------------------------------------------------------------------------------------
# Page


def render_dashboard(entries: Sequence[Entry], *, metric: str | None = None, title: str = "lightning_gen leaderboard",
                     source: str | None = None, generated_at: datetime | None = None) -> str:
    """The whole page as one HTML string, one section per dataset id; ``metric`` ranks every section that has it
    (see :func:`choose_metric`)."""
    if metric is not None and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {tuple(METRICS)}")
    generated_at = generated_at or datetime.now(timezone.utc)
    # In a fixed order (ranking.sections); a data set's class-conditional rows are a section after its unconditional one.
    order = sections(entries)
    datasets = list(dict.fromkeys(d for d, _ in order))
    parts = [_dataset_section(d, [e for e in entries if section_key(e) == (d, c)], metric, c, source)
             for d, c in order]
    families = sorted({e.family for e in entries})
    n_runs = sum(not e.published for e in entries)
    ds_opts = "".join(f'<option value="{esc(d)}">{esc(d)}</option>' for d in datasets)
    fam_opts = "".join(f'<option value="{esc(f)}">{esc(f)}</option>' for f in families)
    sub = f"{n_runs} evaluated run{'s' if n_runs != 1 else ''} · generated {generated_at:%Y-%m-%d %H:%M UTC}"
    if source:
        sub += f" · from {source}"
    body = "".join(parts) or '<p class="empty">No records yet: run the benchmark, or pass --import.</p>'
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
