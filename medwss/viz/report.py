"""A self-contained HTML report: a metrics table with intervals, ROC curves, heatmap overlays.

Everything is inside the one file (images as base64 data URIs), so it can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss import __version__
from medwss.eval.metrics import roc_auc, roc_curve
from medwss.io.atomic import write_text

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml"}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.missing { color: #a00; } .meta { color: #777; font-size: 0.8em; }
"""


def format_value(value: Any) -> str:
    """A table cell: floats to 3 decimals (4 significant digits when large), NaN and None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys in order of first appearance; ``X_lo``/``X_hi`` fold into ``X`` when ``X`` is a key."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    folded = {k for k in keys for suffix in ("_lo", "_hi") if k.endswith(suffix) and k[: -len(suffix)] in keys}
    return [k for k in keys if k not in folded]


def _cell(row: Mapping[str, Any], key: str) -> tuple[str, bool]:
    value = row.get(key)
    text = format_value(value)
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is not None and hi is not None and format_value(lo) != "–" and format_value(hi) != "–":
        text += f" [{format_value(lo)}, {format_value(hi)}]"
    return text, isinstance(value, str)


def metrics_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of metric rows; a value ``X`` with ``X_lo`` and ``X_hi`` shows as ``X [lo, hi]``."""
    if not rows:
        return "<p>No metrics.</p>"
    cols = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            text, is_text = _cell(row, c)
            cls = ' class="text"' if is_text else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def roc_figure_png(roc_curves: Mapping[str, tuple[Any, Any]]) -> tuple[bytes | None, list[str]]:
    """ROC curves of several models in one PNG, and the names that could not be drawn (and why).

    (N, K) scores with K > 1 draw one one-vs-rest curve per class.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.0), dpi=110)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    skipped = []
    drawn = 0
    for name, (y, p) in roc_curves.items():
        y_arr, p_arr = np.asarray(y), np.asarray(p, dtype=np.float64)
        if p_arr.ndim == 2 and p_arr.shape[1] == 1:
            p_arr = p_arr[:, 0]
        parts = [(name, y_arr, p_arr)] if p_arr.ndim == 1 else [
            (f"{name}: class {k}", (y_arr == k).astype(int), p_arr[:, k]) for k in range(p_arr.shape[1])
        ]  # fmt: skip
        for label, yy, pp in parts:
            try:
                fpr, tpr, _ = roc_curve(yy, pp)
                auc = roc_auc(yy, pp)
            except ValueError as exc:
                skipped.append(f"{label}: {exc}")
                continue
            ax.plot(fpr, tpr, lw=1.5, drawstyle="default", label=f"{label} (AUC {auc:.3f})")
            drawn += 1
    if not drawn:
        return None, skipped
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue(), skipped


def _figure_html(caption: str, path: str | Path) -> str:
    p = Path(path)
    cap = html.escape(caption)
    if not p.is_file():
        return f'<figure><p class="missing">image not found: {html.escape(str(p))}</p><figcaption>{cap}</figcaption></figure>'
    mime = _MIME.get(p.suffix.lower(), "application/octet-stream")
    uri = _data_uri(p.read_bytes(), mime)
    return f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _notes_html(notes: str) -> str:
    paragraphs = [p.strip() for p in notes.split("\n\n") if p.strip()]
    return "\n".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def write_report(
    path: str | Path,
    title: str,
    metrics_rows: Sequence[Mapping[str, Any]],
    roc_curves: Mapping[str, tuple[Any, Any]],
    overlays: Sequence[tuple[str, str | Path]],
    notes: str = "",
) -> Path:
    """Write a self-contained HTML report, atomically.

    Args:
        path: Output ``.html``.
        title: Heading and page title.
        metrics_rows: One dict per model (or site, or split), e.g. ``{"model": "insight",
            **classification_report(y, p)}``; ``X_lo``/``X_hi`` keys show as the interval of ``X``.
        roc_curves: Model name → (labels, scores), drawn in one ROC plot.
        overlays: (caption, image path) of heatmap overlays; a missing image is noted, not fatal.
        notes: Free text, shown under the title (blank lines separate paragraphs).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes.strip():
        parts.append(_notes_html(notes))
    parts += ["<h2>Metrics</h2>", metrics_table_html(metrics_rows)]
    if roc_curves:
        png, skipped = roc_figure_png(roc_curves)
        parts.append("<h2>ROC curves</h2>")
        if png is not None:
            parts.append(f'<figure><img src="{_data_uri(png, "image/png")}" alt="ROC curves"></figure>')
        parts += [f'<p class="missing">not drawn: {html.escape(s)}</p>' for s in skipped]
    if overlays:
        parts.append("<h2>Heatmaps</h2>")
        parts += [_figure_html(caption, p) for caption, p in overlays]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    parts += [f'<p class="meta">medwss {html.escape(__version__)} · {html.escape(stamp)}</p>', "</body></html>", ""]
    return write_text(path, "\n".join(parts))
