"""The sample grids on the leaderboard page: a run's thumbnail (the first row of its grid, scaled up with sharp
pixels; a click shows the whole grid) and its "samples over training" strip, each image inlined as a data URI."""

from __future__ import annotations

import base64
import math
from pathlib import Path

from lightning_gen.leaderboard.formatting import esc
from lightning_gen.leaderboard.ranking import Entry

__all__ = ["STRIP_STEPS", "STRIP_WIDTH", "THUMB_MAX_WIDTH", "THUMB_MIN_SCALE", "data_uri", "read_bytes", "strip",
           "thumbnail"]

#: A thumbnail shows its grid at least this many screen pixels per image pixel.
THUMB_MIN_SCALE = 3
#: Widest a thumbnail gets (CSS px): fewer images of the first row are shown where the row at scale is wider.
THUMB_MAX_WIDTH = 280
#: Most grids in a run's "samples over training" strip: the first, the last and evenly spaced ones between; fewer
#: where that many would not fit in one line of :data:`STRIP_WIDTH` CSS px.
STRIP_STEPS, STRIP_WIDTH = 5, 1200



_IMAGE_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def data_uri(data: bytes) -> str | None:
    """PNG or JPEG bytes as a ``data:`` URI (``None`` for anything else), so the page needs no other file."""
    for magic, mime in _IMAGE_MIME:
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


def read_bytes(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, ``None`` for anything else."""
    if not data.startswith(_IMAGE_MIME[0][0]) or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _first_row(size: tuple[int, int], image_shape: object) -> tuple[int, int, int] | None:
    """(tile width, tile height, padding) of a grid of ``image_shape`` images that
    :func:`~lightning_gen.images.image_grid` drew (padding 2) or that has no padding; ``None`` if it fits neither."""
    if not (isinstance(image_shape, (list, tuple)) and len(image_shape) == 3
            and all(isinstance(d, int) and d > 0 for d in image_shape)):
        return None
    _, h, w = image_shape
    gw, gh = size
    for pad in (2, 0):
        if gw > pad and gh > pad and (gw - pad) % (w + pad) == 0 and (gh - pad) % (h + pad) == 0:
            return w, h, pad
    return None


def thumbnail(data: bytes, uri: str, image_shape: object, alt: str, title: str) -> str:
    """The grid cropped by CSS to its first row and scaled by an integer >= :data:`THUMB_MIN_SCALE` (pixelated);
    the ``<img>`` is the whole grid, which a click shows."""
    size = _png_size(data)
    row = _first_row(size, image_shape) if size else None
    if size is None or row is None:  # not a grid of this record's images: the whole picture, 128 px high
        return f'<img class="grid whole" src="{uri}" alt="{esc(alt)}" title="{esc(title)} (click to enlarge)">'
    (gw, gh), (w, h, pad) = size, row
    scale = max(THUMB_MIN_SCALE, math.ceil(32 / w))  # an 8x8 digit at x4, a 28x28 one at x3
    per_row = (gw - pad) // (w + pad)
    shown = max(1, min(per_row, (THUMB_MAX_WIDTH // scale - pad) // (w + pad)))
    view_w, view_h = (shown * (w + pad) + pad) * scale, (h + 2 * pad) * scale
    more = f"first {shown} of {per_row} per row" if shown < per_row else "first row"
    return (f'<div class="thumb" style="width:{view_w}px;height:{view_h}px">'
            f'<img class="grid" src="{uri}" alt="{esc(alt)}" title="{esc(title)} ({more}, ×{scale}; click for the '
            f'whole grid)" width="{gw * scale}" height="{gh * scale}" data-scale="{scale}"></div>')


def strip(entry: Entry) -> str:
    """"Samples over training": up to :data:`STRIP_STEPS` of the grids the run saved while training, first and
    last included, each with its step; empty if the run saved none."""
    grids = entry.training_grids
    if not grids:
        return ""
    last = read_bytes(grids[-1][1])
    size = _png_size(last) if last else None  # a run's grids all have one size
    # about 200 px tall: 8x8 digits (an 82 px grid) twice their size, MNIST and CIFAR grids as they are
    scale = max(1, round(200 / size[1])) if size else 1
    fit = STRIP_WIDTH // (size[0] * scale + 12) if size else STRIP_STEPS  # 12: the gap and borders
    n = min(len(grids), STRIP_STEPS, max(2, fit))
    picked = sorted({round(i * (len(grids) - 1) / max(n - 1, 1)) for i in range(n)})
    figures = []
    for i in picked:
        step, path = grids[i]
        data = read_bytes(path)
        uri = data_uri(data) if data else None
        if uri is None:
            continue
        size = _png_size(data)
        dims = f' width="{size[0] * scale}" height="{size[1] * scale}"' if size else ""
        label = f"step {step:,}"
        figures.append(f'<figure class="step" data-step="{step}"><img class="step-grid" src="{uri}"{dims} '
                       f'alt="{esc(f"samples from {entry.label} at {label}")}" title="{esc(label)} (click to '
                       f'enlarge)"><figcaption>{esc(label)}</figcaption></figure>')
    if not figures:
        return ""
    return ('<div class="strip" role="group" aria-label="samples over training">'
            f'<div class="strip-title">samples over training<span>{len(grids)} grid'
            f'{"s" if len(grids) != 1 else ""} saved, {len(figures)} shown</span></div>' + "".join(figures) + "</div>")
