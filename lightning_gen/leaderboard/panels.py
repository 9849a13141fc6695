"""Two cells of a run's rows on the leaderboard page: the details panel (every metric with the spread it is printed
with, the checkpoint, commit, protocol and config) and the W&B link (or the offline folder and its upload command)."""

from __future__ import annotations

import json

from lightning_gen.leaderboard.formatting import esc, fmt_duration, fmt_metric, fmt_params, safe_url
from lightning_gen.leaderboard.ranking import METRICS, Entry, spread, spread_kind

__all__ = ["details", "wandb_cell"]


def details(entry: Entry) -> str:
    """The details panel: every metric as the table prints it, the checkpoint, commit, protocol and config. A
    definition list that wraps long paths and hashes (no horizontal scrolling)."""
    rec = entry.record or {}
    items: list[tuple[str, str, str]] = []  # (term, text, class of the value)
    metrics = []
    for m in METRICS.values():
        v = entry.value(m.key)
        if v is not None:
            std, kind = spread(entry, m.key), spread_kind(entry, m.key)
            metrics.append(f"{m.label} {fmt_metric(m.key, v)}" + (f" ± {fmt_metric(m.key, std)} ({kind})"
                                                                   if std is not None else ""))
    if entry.value("num_params") is not None:
        metrics.append(f"params {fmt_params(entry.value('num_params'))}")
    if rec.get("train_time_s") is not None:
        metrics.append(f"trained {fmt_duration(rec['train_time_s'])}")
    if metrics:
        items.append(("metrics", " · ".join(metrics), ""))
    for key, term in (("checkpoint", "checkpoint"), ("checkpoint_sha256", "checkpoint sha256"),
                      ("git_commit", "git commit"), ("created_at", "evaluated")):
        if rec.get(key) is not None:
            items.append((term, str(rec[key]), "code"))
    protocol = [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
                for k, v in sorted(entry.protocol.items()) if v is not None]
    if protocol:
        items.append(("protocol", " · ".join(protocol), "code"))
    body = "".join(f'<dt>{esc(t)}</dt><dd class="{c}">{esc(v)}</dd>' for t, v, c in items)
    if rec.get("config") is not None:
        body += f'<dt>config</dt><dd><pre>{esc(json.dumps(rec["config"], indent=1, sort_keys=True))}</pre></dd>'
    return f'<details class="run-details"><summary>details</summary><dl>{body}</dl></details>'


def wandb_cell(location) -> str:
    """The W&B cell: a link to an online run; for a run kept offline (``offline: <folder> | upload: <command>``,
    :func:`lightning_gen.app.wandb_log.offline_location`) the folder and the ``wandb sync`` command that uploads it."""
    url = safe_url(location)
    if url:
        return f'<td><a href="{esc(url)}" target="_blank" rel="noopener noreferrer">W&amp;B</a></td>'
    if isinstance(location, str) and location.startswith("offline: "):
        folder, _, command = location[len("offline: "):].partition(" | upload: ")
        return (f'<td class="wandb-offline"><details><summary>W&amp;B offline</summary>saved in <code>{esc(folder)}'
                f'</code>; upload with <code>{esc(command or "wandb sync " + folder)}</code></details></td>')
    return "<td></td>"
