"""Train the segmenter on the annotated slices and predict with it (shared by rounds and simulation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medwss.active.pool import SliceReader, SliceRef
from medwss.seg.train import SegSample, SegTrainConfig, predict_probs, train_segmenter


def scribble_bounds(label: np.ndarray, num_classes: int, upper_fraction: float) -> np.ndarray:
    """Size bounds from a scribble alone: a scribbled class covers at least its scribble, at most
    `upper_fraction` of the slice; unscribbled classes are unbounded. Shape (K, 2), NaN = none."""
    out = np.full((num_classes, 2), np.nan, dtype=np.float32)
    for c in range(1, num_classes):
        n = int((label == c).sum())
        if n:
            out[c] = (n, upper_fraction * label.size)
    return out


def seg_config(
    base: SegTrainConfig, kinds: Sequence[str], n: int, size_weight: float, min_steps: int
) -> SegTrainConfig:
    """The training config for `n` slices of these annotation kinds: CE + Dice for full masks only,
    partial CE + the size penalty when any scribble is present; enough epochs for `min_steps` steps."""
    weak = any(k == "scribble" for k in kinds)
    steps_per_epoch = max(1, math.ceil(n / base.batch_size))
    epochs = max(base.epochs, math.ceil(min_steps / steps_per_epoch))
    update = {
        "loss": "partial_ce" if weak else "ce_dice",
        "size_weight": size_weight if weak else 0.0,
        "epochs": epochs,
    }
    return base.model_copy(update=update)


def train_on(
    refs: Sequence[SliceRef],
    labels: Sequence[np.ndarray],
    bounds: Sequence[np.ndarray | None],
    reader: SliceReader,
    cfg: SegTrainConfig,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> torch.nn.Module:
    """A segmenter trained on annotated slices (targets with -1 = unlabelled)."""
    samples = [
        SegSample(reader.image(r), lab.astype(np.int64), b) for r, lab, b in zip(refs, labels, bounds, strict=True)
    ]
    model, _ = train_segmenter(samples, cfg, checkpoint=checkpoint, progress=progress)
    return model


def make_predictor(model: torch.nn.Module, cfg: SegTrainConfig, refs: Sequence[SliceRef], reader: SliceReader):  # noqa: ANN201
    """A `Predictor` over pool indices: class probabilities (K, H, W) per slice (MC dropout on request)."""
    from medwss.train.device import resolve_device

    device = resolve_device(cfg.device)

    def predict(indices: list[int], mc_dropout: bool) -> list[np.ndarray]:
        images = [reader.image(refs[i]) for i in indices]
        return predict_probs(model, images, cfg, device=device, batch_size=32, mc_dropout=mc_dropout)

    return predict
