"""In-domain self-supervised pretraining of encoders (SimCLR / SupCon with pluggable positives) and linear probes.

Example:
    >>> from medwss.embed.encoders import create_encoder
    >>> from medwss.embed.pretrain import PretrainConfig, pretrain
    >>> enc = create_encoder("resnet18")  # doctest: +SKIP
    >>> pretrain(enc, tiles, PretrainConfig(epochs=10, out="ssl.pt"))  # doctest: +SKIP
    >>> create_encoder("resnet18", weights="ssl.pt")  # doctest: +SKIP
"""

from __future__ import annotations

from medwss.embed.pretrain.augment import Augment, AugmentConfig
from medwss.embed.pretrain.ntxent import POSITIVES, get_positives, group_positives, instance_positives, nt_xent
from medwss.embed.pretrain.probe import embed, linear_probe
from medwss.embed.pretrain.trainer import (
    PretrainConfig,
    ProjectionHead,
    TileDataset,
    pretrain,
    save_encoder,
    tile_dataset,
)

__all__ = [
    "POSITIVES",
    "Augment",
    "AugmentConfig",
    "PretrainConfig",
    "ProjectionHead",
    "TileDataset",
    "embed",
    "get_positives",
    "group_positives",
    "instance_positives",
    "linear_probe",
    "nt_xent",
    "pretrain",
    "save_encoder",
    "tile_dataset",
]
