"""Segmentation networks by name (MONAI UNet and DynUNet), 2D or 3D."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from medwss.errors import ConfigError
from medwss.registry import Registry


def _unet(
    spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int], dropout: float
) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
        dropout=dropout,
    )


def _dynunet(
    spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int], dropout: float
) -> torch.nn.Module:
    from monai.networks.nets import DynUNet

    n = len(channels)
    if n < 3:
        raise ConfigError(f"dynunet needs at least three levels of channels, got {tuple(channels)}")
    strides = [1] + [2] * (n - 1)
    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[3] * n,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(channels),
        dropout=dropout or None,
        res_block=True,
    )


class SegmenterFactory(Protocol):
    """A segmentation network by name: ``build(spatial_dims, in_channels, out_channels, channels, dropout)``.

    Contract: a module mapping (B, in_channels, *S) to logits (B, out_channels, *S) (deep-supervision
    nets may stack heads on a new axis 1 in training mode) for sizes divisible by
    ``2 ** (len(channels) - 1)``, with a gradient reaching its parameters; `tests/test_contracts.py`
    builds every entry in 2D and checks the shape, finiteness and backward pass.
    """

    def __call__(
        self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int], dropout: float
    ) -> torch.nn.Module: ...


SEGMENTERS: Registry[SegmenterFactory] = Registry("segmenter", package="medwss.seg", marker="SEGMENTERS.register")
"""Segmentation networks by name; a module of `medwss.seg` that calls ``SEGMENTERS.register`` is found on first lookup."""
SEGMENTERS.register("unet", _unet)
SEGMENTERS.register("dynunet", _dynunet)


def create_segmenter(
    name: str = "unet",
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    channels: Sequence[int] = (16, 32, 64, 128),
    dropout: float = 0.0,
) -> torch.nn.Module:
    """A segmenter mapping (B, in_channels, *S) to logits (B, out_channels, *S).

    Spatial sizes must be divisible by ``2 ** (len(channels) - 1)``; `medwss.seg.train` pads for you.

    Args:
        name: A name in `SEGMENTERS`: ``unet`` or ``dynunet``.
        spatial_dims: 2 or 3.
        in_channels: Image channels (e.g. 3 for T2, ADC, high-b).
        out_channels: Classes, background included.
        channels: Feature channels per resolution level.
        dropout: Dropout probability (MC dropout needs it above 0).

    Raises:
        ConfigError: Unknown name (`UnknownNameError`) or invalid dimensions.
    """
    build = SEGMENTERS.get(name)
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if len(channels) < 2:
        raise ConfigError("channels needs at least two levels")
    return build(spatial_dims, in_channels, out_channels, channels, dropout)


def size_multiple(channels: Sequence[int]) -> int:
    """The factor every spatial size must be a multiple of for a network with these levels."""
    return 2 ** (len(channels) - 1)
