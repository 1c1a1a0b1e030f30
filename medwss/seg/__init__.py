"""Shared segmentation core: networks, losses for full and weak labels, and a trainer.

The scribble, active-learning, pseudo-label and counterfactual workflows all train dense
segmenters; they do it through this package so that a target convention (``-1`` = unlabelled),
a padding rule and a checkpoint format hold everywhere.
"""

from medwss.seg.losses import dice_loss, negative_ce, partial_ce, size_penalty, soft_size
from medwss.seg.networks import SEGMENTERS, create_segmenter
from medwss.seg.train import SegSample, SegTrainConfig, load_segmenter, predict_probs, save_segmenter, train_segmenter

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
