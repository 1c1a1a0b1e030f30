"""Pretraining settings, apart from the torch code that uses them (``medwss encoder --help`` stays light).

`PretrainConfig` (configs/pretrain.yaml) is what `medwss.embed.pretrain.trainer.pretrain` does;
`AugmentConfig` its view augmentations (`medwss.embed.pretrain.augment.Augment`). Both modules
re-export them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medwss.config import StrictConfig


class AugmentConfig(StrictConfig):
    """Strengths of the augmentations (0 turns one off)."""

    crop_scale: tuple[float, float] = (0.6, 1.0)
    """Range of the area (2D) or volume (3D) fraction kept by crop-and-resize."""
    aspect: float = 0.25
    """In-plane aspect-ratio jitter of the crop: log-uniform in [1/(1+a), 1+a]."""
    flip: bool = True
    rot90: bool = True
    brightness: float = Field(default=0.08, ge=0)
    """Additive shift, uniform in ±brightness."""
    contrast: float = Field(default=0.1, ge=0)
    """Contrast factor, uniform in 1 ± contrast, about the tile mean."""
    gamma: float = Field(default=0.15, ge=0)
    """log(gamma) uniform in ±gamma."""
    noise_std: float = Field(default=0.02, ge=0)
    """Gaussian noise standard deviation, uniform in [0, noise_std], for a fraction noise_p of tiles."""
    noise_p: float = Field(default=0.5, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    """Gaussian blur sigma in pixels, for a fraction blur_p of tiles."""
    blur_p: float = Field(default=0.3, ge=0, le=1)
    stain: bool | None = None
    """H&E stain jitter: None applies it to 3-channel 2D tiles (the command line: to slides only)."""
    stain_scale: float = Field(default=0.05, ge=0)
    """H&E only: each stain's concentration multiplied by 1 ± stain_scale."""
    stain_shift: float = Field(default=0.02, ge=0)
    """H&E only: each stain's concentration shifted by ± stain_shift (optical density)."""


class PretrainConfig(StrictConfig):
    """What `pretrain` and ``medwss encoder pretrain`` do (configs/pretrain.yaml)."""

    encoder: str = "resnet18"
    """Encoder name (`medwss.embed.encoders.list_encoders`)."""
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Options passed to `create_encoder` (e.g. ``widen_factor: 0.5``); use the same when loading the weights."""
    epochs: int = Field(default=20, ge=1)
    """Passes over the tiles."""
    batch_size: int = Field(default=64, ge=2)
    """Tiles per step (each gives two views)."""
    lr: float = Field(default=1e-3, gt=0)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(default=1e-4, ge=0)
    """AdamW weight decay."""
    warmup: float = Field(default=0.05, ge=0, lt=1)
    """Fraction of the steps with a linear learning-rate warm-up (then cosine decay to 0)."""
    temperature: float = Field(default=0.2, gt=0)
    """NT-Xent temperature."""
    projection_hidden: int = Field(default=512, ge=1)
    """Hidden width of the projection head."""
    projection_dim: int = Field(default=128, ge=1)
    """Output size of the projection head (the space of the loss)."""
    positives: Literal["instance", "group"] = "instance"
    """``instance``: the two views of a tile (SimCLR); ``group``: every tile of the same group (SupCon)."""
    group_by: Literal["patient", "case"] = "patient"
    """What a group is for ``positives: group`` (command line: the manifest's patient_id or case_id)."""
    max_tiles_per_case: int | None = Field(default=None, ge=1)
    """Random subset of each case's tiles (command line); all when None."""
    splits: list[Literal["train", "val", "test"]] | None = None
    """Manifest splits whose cases are used (command line); all cases when None."""
    augment: AugmentConfig = AugmentConfig()
    """Augmentation strengths (a section of the YAML)."""
    seed: int = 0
    """Seed of the weights, the tile subsets and the views."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on CUDA; no effect on the CPU."""
    num_workers: int = Field(default=0, ge=0)
    """Data-loading worker processes."""
    out: str | None = None
    """Where the encoder's weights go; nothing is saved when None."""
