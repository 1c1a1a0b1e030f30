"""PNG panels: image, counterfactual (or attribution map), difference map and mask of one slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medwss.io.atomic import atomic_path


def panel_png(
    image: np.ndarray,
    panels: dict[str, np.ndarray],
    mask: np.ndarray,
    path: str | Path,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write one row of panels: the image, each named map, and the mask (red) over the image.

    Args:
        image: Slice (H, W) in [-1, 1].
        panels: Title → map (H, W); maps in [-1, 1] are shown grey, others with a heat colour map in [0, 1].
        mask: Predicted mask (H, W).
        path: Output PNG.
        truth: Optional true mask, drawn as a green contour.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 2 + len(panels)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.5))
    axes[0].imshow(image.T, cmap="gray", vmin=-1, vmax=1, origin="lower")
    axes[0].set_title("image", fontsize=8)
    for ax, (name, m) in zip(axes[1:-1], panels.items(), strict=True):
        grey = name.startswith("counterfactual")
        ax.imshow(m.T, cmap="gray" if grey else "inferno", vmin=-1 if grey else 0, vmax=1, origin="lower")
        ax.set_title(name, fontsize=8)
    axes[-1].imshow(image.T, cmap="gray", vmin=-1, vmax=1, origin="lower")
    axes[-1].imshow(np.ma.masked_where(~mask.T.astype(bool), mask.T), cmap="autumn", alpha=0.6, origin="lower")
    if truth is not None and truth.any():
        axes[-1].contour(truth.T.astype(float), [0.5], colors="lime", linewidths=0.8, origin="lower")
    axes[-1].set_title("mask (truth green)" if truth is not None else "mask", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)
