"""Encoders: a registry of tile encoders with timm's contract, 2D and 3D, never downloading weights.

The `ENCODERS` registry finds every module of this package that calls `register_encoder` on the
first lookup: a new encoder is one file here with the decorator.

Example:
    >>> from medwss.embed.encoders import create_encoder, list_encoders
    >>> list_encoders()  # doctest: +SKIP
    ['densenet121', 'efficientnet-b0', 'h-optimus-0', 'h-optimus-1', 'phikon', 'resnet18', 'resnet34', 'resnet50',
     'stats', 'uni', 'uni2-h', 'virchow2', 'vit', 'vit-timm']
    >>> enc = create_encoder("resnet18", spatial_dims=3, in_channels=1, weights="ssl.pt")  # doctest: +SKIP
    >>> tokens = enc.forward_features(x)  # (B, 512, h, w, d)  # doctest: +SKIP
    >>> uni = create_encoder("uni", weights="UNI/pytorch_model.bin")  # timm layout, strict  # doctest: +SKIP

Foundation-model layouts (UNI, UNI2-h, Virchow2, H-optimus-0/1, Phikon) are in `vit_timm`.
"""

from __future__ import annotations

from medwss.embed.encoders.base import (
    ENCODERS,
    TORCHSCRIPT_PREFIX,
    Encoder,
    encoder_entry,
    list_encoders,
    register_encoder,
)
from medwss.embed.encoders.factory import create_encoder
from medwss.embed.encoders.weights import load_weights, read_state_dict, sha256_file

__all__ = [
    "ENCODERS",
    "TORCHSCRIPT_PREFIX",
    "Encoder",
    "create_encoder",
    "encoder_entry",
    "list_encoders",
    "load_weights",
    "read_state_dict",
    "register_encoder",
    "sha256_file",
]
