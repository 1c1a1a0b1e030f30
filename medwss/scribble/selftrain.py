"""Largest connected component per class, and self-training on a model's confident pseudo labels.

`largest_components` keeps, per foreground class of a label map, only its largest connected
component (full connectivity, as MONAI's ``KeepLargestConnectedComponent``): in the whole volume
(``"volume"``) or in every axial slice (``"slice"``, the last axis); the pixels dropped become
background. `medwss.scribble.workflow.predict_cases` applies it to K-class label maps
(``largest_component``).

Self-training (``ScribbleConfig.self_training``, WSL4MIS-style; Lee 2013): a trained 2D model
labels the training slices, the labels are the argmax where the top softmax reaches
``pseudo_threshold``, restricted to each class's largest component over the case's slice stack
(other pixels unlabelled), classes not scribbled on a slice unlabelled when ``negative_slices:
unmarked`` takes them as absent, and the scribbles kept as they are; a new model trains on them
with ``pseudo_loss`` (size bounds and known-empty slices from the scribbles, as before).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from medwss.data.labels import IGNORE
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.dataset import PreparedCase, case_slices, image_bounds, is_empty_slice, prior_pixels
from medwss.seg.train import SegSample, SegTrainConfig, predict_probs

Largest = Literal["none", "volume", "slice"]


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    comp, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    if n <= 1:
        return mask
    sizes = np.bincount(comp.ravel())[1:]
    return comp == (int(np.argmax(sizes)) + 1)


def largest_components(labels: np.ndarray, num_classes: int, mode: Largest = "volume") -> np.ndarray:
    """`labels` with every foreground class cut to its largest connected component; the rest background.

    Args:
        labels: Integer label map (any dimensions; ``"slice"``: axial slices on the last axis).
        num_classes: K (background 0 included).
        mode: ``volume`` (one component per class), ``slice`` (one per class and slice) or ``none``.
    """
    if mode == "none":
        return labels
    out = np.array(labels, copy=True)
    for c in range(1, num_classes):
        mask = labels == c
        if not mask.any():
            continue
        if mode == "slice":
            keep = np.stack([_largest(mask[..., z]) for z in range(mask.shape[-1])], axis=-1)
        else:
            keep = _largest(mask)
        out[mask & ~keep] = 0
    return out


def pseudo_labels(probs: np.ndarray, marks: np.ndarray, threshold: float, absent_unmarked: bool) -> np.ndarray:
    """Pseudo labels (N, H, W) of a case's slice stack from class probabilities (N, K, H, W) and scribbles.

    The argmax where its probability is at least `threshold` and inside the class's largest
    component over the stack, else `IGNORE`; with `absent_unmarked`, a class not scribbled on a
    slice is `IGNORE` there; scribbled pixels keep their scribble.
    """
    k = probs.shape[1]
    arg = probs.argmax(1)
    kept = largest_components(np.moveaxis(arg, 0, -1), k, "volume")
    kept = np.moveaxis(kept, -1, 0)
    out = np.where((probs.max(1) >= threshold) & (kept == arg), arg, IGNORE).astype(np.int64)
    if absent_unmarked:
        for n in range(len(out)):
            for c in range(1, k):
                if not (marks[n] == c).any():
                    out[n][out[n] == c] = IGNORE
    labelled = marks != IGNORE
    out[labelled] = marks[labelled]
    return out


def pseudo_samples(
    cases: Sequence[PreparedCase],
    cfg: ScribbleConfig,
    model: torch.nn.Module,
    seg: SegTrainConfig,
    device: str | torch.device = "cpu",
) -> list[SegSample]:
    """Training samples of 2D `cases` with `model`'s pseudo labels (module docstring) as targets.

    Slices without a foreground scribble that are known empty keep their scribbles only (the
    negative term covers them); bounds and emptiness come from the scribbles, as in
    `medwss.scribble.dataset.case_samples`.
    """
    out: list[SegSample] = []
    absent = cfg.negative_slices == "unmarked"
    for p in cases:
        cs = case_slices(p, cfg)
        prior = prior_pixels(cfg, cs.spacing)
        probs = np.stack(predict_probs(model, list(cs.images), seg, device=device))
        labels = pseudo_labels(probs, cs.targets, cfg.pseudo_threshold, absent)
        for n, t in enumerate(cs.targets):
            m = None if cs.masks is None else cs.masks[n]
            empty = is_empty_slice(cfg, p.negative, t)
            target = t if empty else labels[n]
            sample = SegSample(cs.images[n], target, image_bounds(cfg, t, m, empty, prior), empty)
            out += [sample] * (cfg.oversample if (t > 0).any() else 1)
    return out
