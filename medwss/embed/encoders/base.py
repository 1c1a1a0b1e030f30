"""The encoder contract (`Encoder`) and its registry (`register_encoder`, `list_encoders`; building: `factory`).

Every encoder follows timm's contract: `Encoder.forward_features` maps a batch of tiles in [0, 1]
to a token map ``(B, C, h, w)`` (``(B, C, h, w, d)`` in 3D), `Encoder.forward_head` pools it to
``(B, C)``, and `Encoder.forward` chains the two. Intensity normalisation (``mean``/``std``) happens
inside, so callers always pass raw tiles in [0, 1].

Example:
    >>> from medwss.embed.encoders import create_encoder
    >>> enc = create_encoder("resnet18", spatial_dims=2, in_channels=3)  # doctest: +SKIP
    >>> enc(torch.rand(2, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([2, 512])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medwss.errors import ConfigError
from medwss.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHSCRIPT_PREFIX = "torchscript:"


def default_mean_std(spatial_dims: int, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for 2D RGB tiles (what converted weights expect), 0.5 ± 0.25 otherwise."""
    if spatial_dims == 2 and in_channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * in_channels, (0.25,) * in_channels


class Encoder(nn.Module):
    """Base of every encoder: normalisation, the pooled head and the contract's attributes.

    Subclasses build their network in ``__init__`` and implement `tokens` (the network on a
    normalised batch); they do not override `forward_features`, `forward_head` or `forward`.

    Args:
        name: Registry name.
        spatial_dims: 2 or 3.
        in_channels: Channels of the input tiles.
        embed_dim: Channels of the token map, that is the size of the pooled embedding.
        mean: Per-channel mean subtracted from the [0, 1] input (one value is repeated).
        std: Per-channel standard deviation the input is divided by.

    Attributes:
        weights_checksum: sha256 (hex) of the weights file loaded, None for random initialisation.
        config: What `create_encoder` was given (name, spatial_dims, in_channels, kwargs), for run records.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        name: str,
        spatial_dims: int,
        in_channels: int,
        embed_dim: int,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ConfigError(f"encoder '{name}': spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1:
            raise ConfigError(f"encoder '{name}': in_channels must be at least 1, got {in_channels}")
        self.name = name
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.weights_checksum: str | None = None
        self.config: dict[str, Any] = {"name": name, "spatial_dims": spatial_dims, "in_channels": in_channels}
        d_mean, d_std = default_mean_std(spatial_dims, in_channels)
        shape = (1, in_channels) + (1,) * spatial_dims
        self.register_buffer(
            "mean", _per_channel(d_mean if mean is None else mean, in_channels, "mean").view(shape), persistent=False
        )
        self.register_buffer(
            "std", _per_channel(d_std if std is None else std, in_channels, "std").view(shape), persistent=False
        )
        if not bool((self.std > 0).all()):
            raise ConfigError(f"encoder '{name}': std must be positive, got {self.std.flatten().tolist()}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` for a batch in [0, 1]."""
        return (x - self.mean) / self.std  # (B, C, *S)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a normalised batch: ``(B, C_in, *S)`` → ``(B, embed_dim, *s)``."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token map of a batch of tiles in [0, 1].

        Args:
            x: ``(B, in_channels, H, W)``, or ``(B, in_channels, H, W, D)`` for 3D encoders.

        Returns:
            ``(B, embed_dim, h, w)`` or ``(B, embed_dim, h, w, d)``.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            want = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, H, W, D)"
            raise ValueError(
                f"encoder '{self.name}' takes {want} with C={self.in_channels}, got shape {tuple(x.shape)}"
            )
        return self.tokens(self.normalize(x))  # (B, embed_dim, *s)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """Global average pooling of a token map.

        Args:
            features: ``(B, C, *s)`` token map.
            pre_logits: Kept for timm's contract; there is no classifier, so both values return the pooled features.

        Returns:
            ``(B, C)``.
        """
        return features.flatten(2).mean(dim=-1)  # (B, C, *s) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, embed_dim)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, spatial_dims={self.spatial_dims}, in_channels={self.in_channels}, embed_dim={self.embed_dim}"


def _per_channel(value: Sequence[float] | float, channels: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(channels)
    if t.numel() != channels:
        raise ConfigError(f"{what} needs 1 or {channels} values (one per input channel), got {t.numel()}")
    return t


EncoderFactory = Callable[..., Encoder]


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder: its factory and the spatial dimensions it supports."""

    name: str
    factory: EncoderFactory
    spatial_dims: tuple[int, ...]
    parametric: bool


ENCODERS: Registry[EncoderEntry] = Registry(
    "encoder", package="medwss.embed.encoders", marker="register_encoder", hint=", or torchscript:PATH"
)
"""Every encoder; a module of `medwss.embed.encoders` that calls `register_encoder` is found on first lookup."""


def register_encoder(
    name: str, spatial_dims: Sequence[int] = (2, 3), parametric: bool = True
) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory ``(spatial_dims, in_channels, **kwargs) -> Encoder`` under `name`.

    Args:
        name: The name users pass to `create_encoder` and ``medwss embed --encoder``.
        spatial_dims: The spatial dimensions the encoder supports.
        parametric: False for weight-free encoders (nothing to train or load).
    """

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name.startswith(TORCHSCRIPT_PREFIX):
            raise ValueError(f"encoder name '{name}' is taken")
        ENCODERS.register(name, EncoderEntry(name, factory, tuple(spatial_dims), parametric))
        return factory

    return decorate


def list_encoders() -> list[str]:
    """Names of the registered encoders, sorted (``torchscript:PATH`` is accepted besides these)."""
    return sorted(ENCODERS)


def encoder_entry(name: str) -> EncoderEntry:
    """The registry entry of `name`; `UnknownNameError` (a `ConfigError`) listing the known names if there is none."""
    return ENCODERS.get(name)
