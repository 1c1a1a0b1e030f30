"""`torchscript:PATH` encoders: a TorchScript file (``torch.jit.save``) wrapped in the encoder contract."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from medwss.embed.encoders.base import Encoder
from medwss.embed.encoders.weights import sha256_file
from medwss.errors import ConfigError, CorruptFileError, require_file


class TorchScriptEncoder(Encoder):
    """A TorchScript module as an encoder.

    If the module returns a 4D/5D tensor it is the token map; a 2D ``(B, C)`` output is taken as
    already pooled and `forward_features` returns it as ``(B, C, 1, 1[, 1])``. The module gets the
    normalised input; by default no normalisation is applied (``mean=0``, ``std=1``), since scripted
    models often carry their own. ``weights_checksum`` is the file's sha256.

    Args:
        path: The TorchScript file.
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        mean: Normalisation mean (default 0).
        std: Normalisation standard deviation (default 1).
        embed_dim: Output channels; found by one forward pass on zeros when not given.
        probe_size: Side of the zero input of that forward pass (default 224 in 2D, 64 in 3D).
    """

    def __init__(
        self,
        path: str | Path,
        spatial_dims: int = 2,
        in_channels: int = 3,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        embed_dim: int | None = None,
        probe_size: int | None = None,
    ) -> None:
        p = require_file(path)
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise CorruptFileError(f"not a TorchScript file ({str(exc).splitlines()[0]})", p) from exc
        if embed_dim is None:
            side = probe_size or (224 if spatial_dims == 2 else 64)
            module.eval()
            with torch.no_grad():
                out = module(torch.zeros(1, in_channels, *(side,) * spatial_dims))
            if not isinstance(out, torch.Tensor) or out.ndim not in (2, spatial_dims + 2):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ConfigError(f"TorchScript encoder must return (B, C) or a (B, C, *S) map, got {shape}", p)
            embed_dim = int(out.shape[1])
        super().__init__(f"torchscript:{p}", spatial_dims, in_channels, embed_dim, mean, std)
        self.module = module
        self.path = str(p)
        self.weights_checksum = sha256_file(p)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)  # (B, C, *s) or (B, C)
        if out.ndim == 2:
            return out.reshape(*out.shape, *(1,) * self.spatial_dims)  # (B, C, 1, 1[, 1])
        return out
