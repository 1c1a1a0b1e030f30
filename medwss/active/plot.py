"""Learning-curve plots: Dice against the percentage of slices annotated, one line per strategy, 95% bands."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.io.atomic import atomic_path

STYLE = {
    "contrastive_coreset": ("tab:red", "-"),
    "coreset": ("tab:blue", "--"),
    "random": ("black", ":"),
    "entropy": ("tab:green", "-."),
    "margin": ("tab:olive", "-."),
    "bald": ("tab:purple", "-."),
    "typiclust": ("tab:orange", "--"),
}


def plot_curves(
    summary: Sequence[dict[str, Any]], path: str | Path, pool_size: int | None = None, title: str = ""
) -> Path:
    """One panel per annotation mode; write a PNG atomically and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({s["mode"] for s in summary})
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(5.5 * max(1, len(modes)), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=False):
        for s in (s for s in summary if s["mode"] == mode):
            colour, ls = STYLE.get(s["strategy"], (None, "-"))
            ax.plot(s["percent"], s["dice_mean"], ls, color=colour, marker="o", ms=3, label=s["strategy"])
            if len(s["seeds"]) > 1:
                lo, hi = np.clip(s["dice_lo"], 0, 1), np.clip(s["dice_hi"], 0, 1)  # Dice lives in [0, 1]
                ax.fill_between(s["percent"], lo, hi, color=colour, alpha=0.07)
        ax.set_xlabel("slices annotated (% of pool" + (f" of {pool_size})" if pool_size else ")"))
        ax.set_ylabel("test Dice (3D, mean over classes)")
        n_seeds = max((len(s["seeds"]) for s in summary if s["mode"] == mode), default=0)
        ax.set_title(f"{title + ': ' if title else ''}{mode} annotations ({n_seeds} seeds, 95% CI)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
