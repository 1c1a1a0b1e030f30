"""Shared segmentation core: networks, losses for full and weak labels, and a trainer.

The scribble, active-learning, pseudo-label and counterfactual workflows all train dense
segmenters; they do it through this package so that a target convention (``-1`` = unlabelled),
a padding rule and a checkpoint format hold everywhere.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medwss.seg.config import SegTrainConfig
    from medwss.seg.losses import dice_loss, negative_ce, partial_ce, size_penalty, soft_size
    from medwss.seg.networks import SEGMENTERS, create_segmenter
    from medwss.seg.train import SegSample, load_segmenter, predict_probs, save_segmenter, train_segmenter

_HOME = {
    "SEGMENTERS": "networks", "create_segmenter": "networks", "SegTrainConfig": "config",
    "dice_loss": "losses", "negative_ce": "losses", "partial_ce": "losses", "size_penalty": "losses",
    "soft_size": "losses", "SegSample": "train", "load_segmenter": "train", "predict_probs": "train",
    "save_segmenter": "train", "train_segmenter": "train",
}  # fmt: skip
"""Where each name lives: imported on first use, so that ``medwss.seg.config`` loads without torch."""


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'medwss.seg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"medwss.seg.{_HOME[name]}"), name)


__all__ = [
    "SEGMENTERS",
    "SegSample",
    "SegTrainConfig",
    "create_segmenter",
    "dice_loss",
    "load_segmenter",
    "negative_ce",
    "partial_ce",
    "predict_probs",
    "save_segmenter",
    "size_penalty",
    "soft_size",
    "train_segmenter",
]
