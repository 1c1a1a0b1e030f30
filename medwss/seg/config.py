"""`SegTrainConfig`: how a segmenter is built and trained (no torch import: the CLI builds flags from it).

`SegTrainSettings` holds the network and optimisation keys that every segmentation workflow shares;
`SegTrainConfig` adds the input channels. Workflow configs that train a segmenter derive from
`SegTrainSettings` (`medwss.scribble.config.ScribbleConfig`) or nest a `SegTrainConfig`
(`medwss.active.state.ALConfig`), so that the keys and their meaning live here only.
"""

from __future__ import annotations

from typing import Literal

from medwss.config import StrictConfig


class SegTrainSettings(StrictConfig):
    """The network and optimisation keys of a segmenter's training (everything but its input channels)."""

    network: Literal["unet", "dynunet"] = "unet"
    """Segmentation network (`medwss.seg.networks.SEGMENTERS`)."""
    spatial_dims: Literal[2, 3] = 2
    """2: axial slices; 3: volumes (sliding-window inference)."""
    num_classes: int = 2
    """Output classes, background included (2: one foreground class)."""
    channels: tuple[int, ...] = (16, 32, 64, 128)
    """Feature channels per resolution level of the network."""
    dropout: float = 0.0
    """Dropout probability inside the network."""
    loss: Literal["partial_ce", "ce_dice"] = "partial_ce"
    """Cross-entropy on the labelled pixels only (partial_ce), or that plus soft Dice (ce_dice)."""
    size_weight: float = 0.0
    """Weight of the size-constraint penalty (0: off)."""
    size_warmup: int = 0
    """Epochs over which the size weight ramps linearly from 0 (lets the CE term locate objects first)."""
    size_per_slice: bool = False
    """3D: size bounds per axial slice instead of per volume."""
    negative_weight: float = 0.0
    """Weight of the cross-entropy to background on images known to hold no foreground (0: off)."""
    epochs: int = 30
    """Training epochs."""
    batch_size: int = 8
    """Images per batch."""
    lr: float = 1e-3
    """Learning rate (AdamW)."""
    weight_decay: float = 1e-5
    """Weight decay of the optimiser."""
    augment: bool = True
    """Random flips, rotations and intensity changes of training images."""
    seed: int = 0
    """Seed of the initialisation, the batches and the augmentation."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on CUDA; no effect on the CPU."""


class SegTrainConfig(SegTrainSettings):
    """How a segmenter is built and trained (stored unchanged; validated by pydantic)."""

    in_channels: int = 1
    """Input channels of the network (image sequences stacked)."""


__all__ = ["SegTrainConfig", "SegTrainSettings"]
