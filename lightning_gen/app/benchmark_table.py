"""The plain-text table ``lightning-gen benchmark`` prints: one row per record, then the protocol its numbers were
measured under (samples, extractor, what each ± is, the NLL estimator)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _spread_note(protocol: dict) -> str:
    """What the record's ± are, as the table's protocol line says it."""
    if protocol.get("fid_spread") == "draws":
        return f"; ± over {protocol['draws']} draws"
    if protocol.get("fid_spread") == "bootstrap":
        return ("; one draw: FID ± a bootstrap" + ("" if protocol.get("fid_spread_calibrated") else
                                                  " (too few samples per dimension: overstated)")
                + ", IS/KID ± within the draw")
    return ""


def format_table(records: list[dict]) -> str:
    """A plain-text table of the records, each followed by the protocol its numbers were measured under."""
    text = [("run", "run_name", 28), ("model", "model", 14), ("dataset", "dataset", 14)]
    numbers = [("FID", "fid", ".3f", 9), ("IS", "is_mean", ".3f", 7), ("KID", "kid_mean", ".4g", 10),
               ("NLL nats", "nll_nats", ".3f", 10), ("bits/dim", "nll_bpd", ".4f", 8), ("probe", "probe_acc", ".4f", 7),
               ("img/s", "samples_per_s", ".1f", 9), ("params", "num_params", ",", 11)]
    lines = ["  ".join([f"{title:<{w}}" for title, _, w in text] + [f"{title:>{w}}" for title, _, _, w in numbers])]
    for r in records:
        cells = [f"{str(r[key])[:w]:<{w}}" for _, key, w in text]
        cells += [f"{_fmt(r['metrics'].get(key), fmt):>{w}}" for _, key, fmt, w in numbers]
        lines.append("  ".join(cells))
        p = r["protocol"]
        sample_part = "no sample metrics"
        if p["num_samples"]:
            sample_part = (f"{p['num_samples']} samples vs test ({p['num_test_images']}) via {p['extractor']} "
                           f"(weights {str(p['extractor_weights_sha256'])[:12]})"
                           + ("; FID BIASED: no more images than feature dimensions" if p.get("fid_biased") else "")
                           + _spread_note(p))
        lines.append(f"    protocol: {sample_part}; NLL {p['nll_estimator'] or '-'}; {p['devices']} device(s)")
    return "\n".join(lines)
