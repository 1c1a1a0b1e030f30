"""Linear probes: how linearly separable a label is in an encoder's embedding (standardised logistic regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.embed.encoders.base import Encoder
from medwss.embed.tiles import TileSet


@torch.no_grad()
def embed(encoder: Encoder, tiles: Any, batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """Pooled embeddings ``(N, embed_dim)`` of tiles in [0, 1] (a tensor ``(N, C, *S)`` or a sequence), in eval mode."""
    encoder = encoder.to(device).eval()
    out = []
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        x = chunk if isinstance(chunk, torch.Tensor) else torch.stack([torch.as_tensor(t) for t in chunk])
        out.append(encoder(x.float().to(device)).cpu())  # (b, embed_dim)
    return torch.cat(out).numpy() if out else np.zeros((0, encoder.embed_dim), np.float32)


def linear_probe(
    features_train: np.ndarray,
    y_train: np.ndarray,
    features_test: np.ndarray,
    y_test: np.ndarray,
    c: float = 1.0,
    max_iter: int = 2000,
) -> dict[str, float]:
    """Fit a logistic regression on standardised training features and score the test set.

    Args:
        features_train: ``(N, D)`` training embeddings.
        y_train: ``(N,)`` integer labels.
        features_test: ``(M, D)`` test embeddings.
        y_test: ``(M,)`` integer labels.
        c: Inverse L2 regularisation strength.
        max_iter: Solver iterations.

    Returns:
        ``{"auc": ..., "accuracy": ...}``; the AUC is one-vs-rest macro for more than two classes,
        NaN when the test set holds a single class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train, y_test = np.asarray(y_train).astype(int), np.asarray(y_test).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    model.fit(np.asarray(features_train, dtype=np.float64), y_train)
    x_test = np.asarray(features_test, dtype=np.float64)
    proba = model.predict_proba(x_test)
    if len(np.unique(y_test)) < 2:
        auc = float("nan")
    elif proba.shape[1] == 2:
        auc = float(roc_auc_score(y_test, proba[:, 1]))
    else:
        auc = float(roc_auc_score(y_test, proba, multi_class="ovr", labels=model.classes_))
    return {"auc": auc, "accuracy": float(accuracy_score(y_test, model.predict(x_test)))}


def labelled_phantom_tiles(
    case: Any, root: Path, tile: int, mpp: float, min_tissue: float = 0.75
) -> tuple[TileSet, np.ndarray]:
    """Tiles of a WSI phantom on a regular grid with their ground-truth label (1 = tumour).

    Keeps tiles with at least `min_tissue` tissue that are either clearly tumour (≥ 50%) or free of
    it, from the phantom's tissue and tumour masks (at the manifest's ``meta_mask_downsample``).

    Args:
        case: A `Case` of a WSI phantom manifest.
        root: The manifest's folder (``meta_tissue`` is relative to it).
        tile: Tile side in pixels at `mpp`.
        mpp: Microns per pixel of the tiles.
        min_tissue: Minimum tissue fraction of a kept tile.
    """
    from PIL import Image

    ds = int(case.meta["mask_downsample"])
    tumour = np.asarray(Image.open(case.mask)) > 0
    tissue = np.asarray(Image.open(root / case.meta["tissue"])) > 0
    span = int(round(tile * mpp / float(case.meta["mpp"])))  # level-0 pixels per tile
    k = span // ds  # mask pixels per tile
    rows, cols = tissue.shape[0] // k, tissue.shape[1] // k
    frac = [m[: rows * k, : cols * k].reshape(rows, k, cols, k).mean((1, 3)) for m in (tissue, tumour)]
    r, c = np.nonzero((frac[0] >= min_tissue) & ((frac[1] >= 0.5) | (frac[1] == 0)))
    tiles = TileSet(case.case_id, str(case.image), "slide", np.stack([c * span, r * span], 1), np.stack([r, c], 1),
                    (rows, cols), (tile,), frac[0][r, c], mpp=mpp, level=0, span=span)  # fmt: skip
    return tiles, (frac[1][r, c] >= 0.5).astype(int)
