"""The configs of `medwss mil` (no torch import: the CLI builds its flags from them).

`MILTrainConfig` is how `medwss mil train` trains (`medwss.mil.train`, which re-exports it);
`MILApplyConfig` holds the settings of ``mil predict`` and ``mil heatmap``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medwss.config import StrictConfig


class MILTrainConfig(StrictConfig):
    """How `medwss mil train` trains (configs/mil_*.yaml)."""

    aggregator: str = "insight"
    """Aggregator name (`medwss.mil.registry`): insight, abmil, clam_sb, transmil, mean, max, ..."""
    aggregator_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Options of the aggregator; one it does not take is refused here, so the error names the config file."""

    @model_validator(mode="after")
    def _known_options(self) -> MILTrainConfig:
        from medwss.mil.base import unknown_options

        problem = unknown_options(self.aggregator, self.aggregator_kwargs)
        if problem:
            raise ValueError(f"aggregator_kwargs: {problem}")
        return self

    epochs: int = Field(40, ge=1)
    """Training epochs (at most: early stopping may end sooner)."""
    lr: float = Field(3e-4, gt=0)
    """Learning rate (AdamW)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear learning-rate warm-up over this many optimiser steps (cases), then a per-step cosine
    decay; 0: no warm-up and the per-epoch cosine schedule."""
    clip_grad_norm: float | None = Field(None, gt=0)
    """Clip the gradient norm of every step to this value (None: no clipping)."""
    restarts: int = Field(1, ge=1)
    """Initialisations tried: each trains `restart_epochs` epochs and the one with the best `monitor`
    (over its epochs) continues to `epochs`; 1: a single run. The first is the model as given, the
    others are redrawn from `seed` and the restart's number (`medwss.mil.train.reinitialize`)."""
    restart_epochs: int = Field(5, ge=1)
    """Epochs of each restart (counted in `epochs`: the chosen one continues from there)."""
    weight_decay: float = Field(1e-4, ge=0)
    """Weight decay of the optimiser."""
    class_weighting: bool = True
    """Weight the loss by inverse class frequency of the training cases."""
    patience: int = Field(10, ge=1)
    """Epochs without improvement of `monitor` before stopping, counted once off the starting plateau."""
    min_epochs: int = Field(10, ge=1)
    """Epochs trained before early stopping may stop the run."""
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    """What selects the best epoch (the training loss when there are no validation cases)."""
    mode: Literal["auto", "min", "max"] = "auto"
    """Direction of `monitor`; auto: min for losses, max for AUC."""
    plateau_tol: float = Field(0.05, ge=0, lt=1)
    """Relative drop below the first epoch's training loss that ends the starting plateau."""
    seed: int = 0
    """Seed of the initialisation, the split and the case order."""
    val_fraction: float = Field(0.25, ge=0, lt=1)
    """Fraction of the training patients held out for validation when the manifest has no val split."""
    folds: int | None = Field(None, ge=2)
    """Patient-level k-fold cross-validation (None: one train/val run)."""
    max_instances: int | None = Field(None, ge=1)
    """Subsample bags to this many instances while training (None: every instance)."""
    standardize: bool = True
    """Standardise features channel-wise with the training instances' mean and standard deviation
    (kept in the model: `medwss.mil.base.Aggregator.set_input_norm`)."""
    grid_flips: bool = False
    """Bag augmentation: a random rotation by 90° steps and flip of the tile grid (in-plane), per case and epoch."""
    tile_dropout: float = Field(0.0, ge=0, lt=1)
    """Bag augmentation: drop this fraction of a bag's tiles at random, per case and epoch."""
    feature_noise: float = Field(0.0, ge=0)
    """Bag augmentation: Gaussian noise of this standard deviation added to the features."""
    tokens: bool = False
    """Feed the bags' spatial token maps to the aggregator (bags embedded with tokens)."""
    amp: bool = True
    """Mixed precision (autocast) on CUDA; no effect on the CPU."""
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    """Autocast type of mixed precision."""
    grad_checkpointing: bool = False
    """Recompute the aggregator's activations in the backward pass (less memory, more time)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""


class MILApplyConfig(StrictConfig):
    """How `medwss mil predict` and `mil heatmap` apply a model (configs/mil_apply.yaml).

    The embedding keys (``encoder`` to ``device``) only matter for ``-i DIR`` of slides or volumes
    (`medwss.embed.images_to_bags.embedding_configs`); None takes what the model file records.
    ``threshold`` is heatmap's only (``mil predict`` has no flag for it and ignores it).
    """

    encoder: str | None = None
    """Encoder of the training bags, when the model does not record it."""
    weights: str | None = None
    """Its weights file, as given to `medwss embed` (checked by sha256)."""
    tile_size: int | None = Field(None, ge=1)
    """Tile side (None: recorded, else as `medwss tile`)."""
    mpp: float | None = Field(None, gt=0)
    """Slides: microns per pixel of the tiles (None: recorded)."""
    mode: Literal["axial2d", "stack25d", "patch3d"] | None = None
    """Volumes: tiling mode (None: recorded)."""
    modality: str | None = None
    """Modality of the images of -i (WSI, CT, MR, ...; None: from the files)."""
    device: str = "auto"
    """Where the encoder runs: ``auto``, ``cpu``, ``cuda``, ..."""
    nan: Literal["raise", "keep"] = "raise"
    """NaN/inf features in a bag: fail the case (raise) or keep them (NaN scores)."""
    threshold: float = 0.5
    """Heatmap: score threshold of the GeoJSON contours."""


__all__ = ["MILApplyConfig", "MILTrainConfig"]
