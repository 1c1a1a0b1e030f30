"""`create_encoder`: a registered encoder by name, or a TorchScript file, with local weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medwss.embed.encoders.base import TORCHSCRIPT_PREFIX, Encoder, encoder_entry
from medwss.embed.encoders.torchscript import TorchScriptEncoder
from medwss.embed.encoders.weights import load_weights
from medwss.errors import ConfigError


def create_encoder(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 3,
    weights: str | Path | None = None,
    **kwargs: Any,
) -> Encoder:
    """Build a registered encoder (random initialisation unless `weights` is given).

    Args:
        name: A name from `list_encoders`, or ``torchscript:PATH`` for a TorchScript file.
        spatial_dims: 2 for slides, axial slices and 2.5D stacks, 3 for volume patches.
        in_channels: Channels of the tiles (3 for slides; C or C·D for volumes).
        weights: A local state-dict file (loaded with ``weights_only=True``); its sha256 is
            kept in ``weights_checksum``. Nothing is ever downloaded.
        **kwargs: Options of the encoder (``mean``, ``std`` and architecture options such as
            ``widen_factor`` for ResNets or ``hidden_size`` for the ViT).

    Returns:
        The encoder, in eval mode.

    Raises:
        ConfigError: Unknown name, unsupported spatial_dims, bad options, or weights that do not fit.
    """
    if name.startswith(TORCHSCRIPT_PREFIX):
        if weights is not None:
            raise ConfigError("a TorchScript encoder carries its own weights; do not pass weights", weights)
        enc: Encoder = TorchScriptEncoder(name[len(TORCHSCRIPT_PREFIX) :], spatial_dims, in_channels, **kwargs)
        return enc.eval()
    entry = encoder_entry(name)
    if spatial_dims not in entry.spatial_dims:
        raise ConfigError(f"encoder '{name}' supports spatial_dims {entry.spatial_dims}, not {spatial_dims}")
    try:
        enc = entry.factory(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"encoder '{name}': bad options {sorted(kwargs)} ({exc})") from exc
    enc.config.update({"name": name, "kwargs": dict(kwargs)})
    if weights is not None:
        if not entry.parametric:
            raise ConfigError(f"encoder '{name}' has no weights to load", weights)
        _, _, enc.weights_checksum = load_weights(enc, weights)
    return enc.eval()
