"""Text helpers shared by the page (:mod:`.html`), its plots (:mod:`.plots`) and the W&B table: escaping, numbers
as the board prints them, and the one check that lets a URL from a record become a link.

KID is a squared MMD of order 1e-3 to 1e-2: the board prints it times :data:`DISPLAY_SCALE` (``KID ×10³``, as the
papers do) so its digits are readable; records, the store and the W&B table keep the raw value.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlparse

__all__ = ["DISPLAY_SCALE", "displayed", "esc", "fmt_count", "fmt_duration", "fmt_metric", "fmt_params", "safe_url"]

#: Metrics printed multiplied by a power of ten, the factor their column header names (``KID ×10³``).
DISPLAY_SCALE = {"kid_mean": 1e3, "kid_std": 1e3}


def esc(value: Any) -> str:
    """HTML-escape anything for text or a double-quoted attribute (``None`` is the empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def displayed(key: str, v: float) -> float:
    """A raw metric value as the board prints and plots it (KID times 10³, anything else unchanged)."""
    return v * DISPLAY_SCALE.get(key, 1.0)


def fmt_metric(key: str, v: float) -> str:
    """A raw metric value with the scale and precision its column uses (KID 0.0243 -> "24.30", under KID ×10³)."""
    if key in ("fid", "is_mean", "nll_nats"):
        return f"{v:.2f}"
    if key in DISPLAY_SCALE:  # KID of Inception features is ~0.02 (20.00); of small classifiers' often ~1 (1,000)
        d = displayed(key, v)
        return f"{d:.2f}" if abs(d) < 100 else f"{d:,.1f}" if abs(d) < 1000 else f"{d:,.0f}"
    if key == "nll_bpd":
        return f"{v:.3f}"
    if key == "probe_acc":
        return f"{100 * v:.1f}%"
    if key == "samples_per_s":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3g}"
    return f"{v:.4g}"


def fmt_params(n: float | None) -> str:
    """A parameter count: 1204737 -> "1.2M"."""
    if n is None:
        return ""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_duration(seconds: float | None) -> str:
    """A training time: "1h 30m", "12m", "40s"."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m" if m else f"{s}s"


def fmt_count(n: Any) -> str:
    """10000 -> "10k", as the papers write sample counts."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return str(n)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:g}"


def safe_url(url: Any) -> str | None:
    """``url`` stripped if it is an absolute http(s) URL, else ``None`` (no ``javascript:`` links)."""
    if not isinstance(url, str):
        return None
    try:
        parsed = urlparse(url.strip())
    except ValueError:
        return None
    return url.strip() if parsed.scheme in ("http", "https") and parsed.netloc else None
