"""In-domain self-supervised pretraining of encoders (SimCLR / SupCon with pluggable positives) and linear probes.

Example:
    >>> from medwss.embed.encoders import create_encoder
    >>> from medwss.embed.pretrain import PretrainConfig, pretrain
    >>> enc = create_encoder("resnet18")  # doctest: +SKIP
    >>> pretrain(enc, tiles, PretrainConfig(epochs=10, out="ssl.pt"))  # doctest: +SKIP
    >>> create_encoder("resnet18", weights="ssl.pt")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medwss.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers
    from medwss.embed.pretrain.augment import Augment
    from medwss.embed.pretrain.config import AugmentConfig, PretrainConfig
    from medwss.embed.pretrain.ntxent import POSITIVES, get_positives, group_positives, instance_positives, nt_xent
    from medwss.embed.pretrain.probe import embed, linear_probe
    from medwss.embed.pretrain.trainer import ProjectionHead, TileDataset, pretrain, save_encoder, tile_dataset

_LAZY = {
    "Augment": "medwss.embed.pretrain.augment",
    "AugmentConfig": "medwss.embed.pretrain.config",
    "POSITIVES": "medwss.embed.pretrain.ntxent",
    "get_positives": "medwss.embed.pretrain.ntxent",
    "group_positives": "medwss.embed.pretrain.ntxent",
    "instance_positives": "medwss.embed.pretrain.ntxent",
    "nt_xent": "medwss.embed.pretrain.ntxent",
    "embed": "medwss.embed.pretrain.probe",
    "linear_probe": "medwss.embed.pretrain.probe",
    "PretrainConfig": "medwss.embed.pretrain.config",
    "ProjectionHead": "medwss.embed.pretrain.trainer",
    "TileDataset": "medwss.embed.pretrain.trainer",
    "pretrain": "medwss.embed.pretrain.trainer",
    "save_encoder": "medwss.embed.pretrain.trainer",
    "tile_dataset": "medwss.embed.pretrain.trainer",
}
"""Where each re-exported name lives; imported on first use, so the CLI and configs do not load torch."""

__getattr__ = lazy_exports(__name__, _LAZY)


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
