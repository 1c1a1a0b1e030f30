"""CNN and ViT encoders built from MONAI's networks, 2D and 3D, randomly initialised (no download).

Registered names: ``resnet18``, ``resnet34``, ``resnet50``, ``densenet121``, ``efficientnet-b0``
and ``vit`` (a small ViT for CPUs: patch 16, width 192, 6 layers, 3 heads, all configurable).
Classifier layers are removed, so every parameter takes part in the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medwss.embed.encoders.base import Encoder, register_encoder
from medwss.errors import ConfigError

_RESNETS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}
_RESNET_PLANES = [64, 128, 256, 512]


class ResNetEncoder(Encoder):
    """MONAI ResNet without its classifier; stem as torchvision's (7×7 conv, stride 2, max pool), output stride 32.

    Args:
        name: Registry name (one of ``resnet18``, ``resnet34``, ``resnet50``).
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        mean: Normalisation mean (see `Encoder`).
        std: Normalisation standard deviation.
        widen_factor: Multiplies the channel counts (0.25 gives a tiny network for tests and CPUs).
        **kwargs: Other `monai.networks.nets.ResNet` options (``conv1_t_size``, ``conv1_t_stride``,
            ``no_max_pool``, ``norm``, ``act``, ``shortcut_type``).
    """

    def __init__(
        self,
        name: str,
        spatial_dims: int,
        in_channels: int,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        widen_factor: float = 1.0,
        **kwargs: Any,
    ) -> None:
        from monai.networks.nets import ResNet

        block, layers = _RESNETS[name]
        expansion = 4 if block == "bottleneck" else 1
        super().__init__(name, spatial_dims, in_channels, int(_RESNET_PLANES[3] * widen_factor) * expansion, mean, std)
        options = {"conv1_t_size": 7, "conv1_t_stride": 2, **kwargs}
        self.backbone = ResNet(
            block,
            layers,
            _RESNET_PLANES,
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            widen_factor=widen_factor,
            feed_forward=False,
            **options,
        )

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net.act(net.bn1(net.conv1(x)))  # (B, 64, H/2, W/2)
        if not net.no_max_pool:
            x = net.maxpool(x)  # (B, 64, H/4, W/4)
        x = net.layer1(x)  # (B, 64·e, H/4, W/4)
        x = net.layer2(x)  # (B, 128·e, H/8, W/8)
        x = net.layer3(x)  # (B, 256·e, H/16, W/16)
        return net.layer4(x)  # (B, embed_dim, H/32, W/32)


def _resnet(name: str) -> None:
    @register_encoder(name)
    def factory(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
        return ResNetEncoder(name, spatial_dims, in_channels, **kwargs)

    factory.__doc__ = f"MONAI {name}, classifier removed; see `ResNetEncoder`."


for _name in _RESNETS:
    _resnet(_name)


class DenseNetEncoder(Encoder):
    """MONAI DenseNet121's feature extractor (``features`` then ReLU), 1024 channels, output stride 32.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        **kwargs: Other `monai.networks.nets.DenseNet121` options (``init_features``, ``growth_rate``, ``bn_size``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        **kwargs: Any,
    ) -> None:
        from monai.networks.nets import DenseNet121

        net = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, **kwargs)
        width = next(m for m in net.class_layers if isinstance(m, nn.Linear)).in_features
        super().__init__("densenet121", spatial_dims, in_channels, width, mean, std)
        self.features = net.features

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # (B, 1024, H/32, W/32)


@register_encoder("densenet121")
def densenet121(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
    """MONAI DenseNet121, classifier removed; see `DenseNetEncoder`."""
    return DenseNetEncoder(spatial_dims, in_channels, **kwargs)


class EfficientNetEncoder(Encoder):
    """MONAI EfficientNetBN (``efficientnet-b0``) up to its head convolution, 1280 channels, output stride 32.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        model_name: ``efficientnet-b0`` to ``efficientnet-b7``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        model_name: str = "efficientnet-b0",
    ) -> None:
        from monai.networks.nets import EfficientNetBN

        net = EfficientNetBN(
            model_name, pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1
        )
        super().__init__("efficientnet-b0", spatial_dims, in_channels, int(net._conv_head.out_channels), mean, std)
        for unused in ("_fc", "_avg_pooling", "_dropout"):  # the classifier, pooling and dropout
            setattr(net, unused, nn.Identity())
        self.backbone = net

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(net._conv_stem_padding(x))))  # (B, 32, H/2, W/2)
        x = net._blocks(x)  # (B, 320, H/32, W/32)
        return net._swish(net._bn1(net._conv_head(net._conv_head_padding(x))))  # (B, 1280, H/32, W/32)


@register_encoder("efficientnet-b0")
def efficientnet_b0(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
    """MONAI EfficientNet-B0, classifier removed; see `EfficientNetEncoder`."""
    return EfficientNetEncoder(spatial_dims, in_channels, **kwargs)


def _block(kind: str, width: int, heads: int, mlp: int, dropout: float) -> nn.Module:
    """One pre-norm transformer block (``(B, N, C)`` in and out) of PyTorch or of MONAI."""
    if kind == "torch":
        return nn.TransformerEncoderLayer(
            width, heads, mlp, dropout, activation="gelu", batch_first=True, norm_first=True
        )
    if kind == "monai":
        try:
            import einops  # noqa: F401  (MONAI's attention needs it)
        except ImportError as exc:
            raise ConfigError("vit: block 'monai' needs einops (pip install 'medwss[monai-vit]')") from exc
        from monai.networks.blocks import TransformerBlock

        return TransformerBlock(width, mlp, heads, dropout, qkv_bias=True)
    raise ConfigError(f"vit: unknown block {kind!r}; choose torch or monai")


class ViTEncoder(Encoder):
    """A small ViT (no class token) whose patch tokens are laid out as a map ``(B, C, h, w[, d])``.

    Patch embedding is MONAI's `PatchEmbeddingBlock` (convolutional, learnt position embeddings);
    the blocks are pre-norm transformer layers: ``torch.nn.TransformerEncoderLayer`` (GELU;
    ``block="torch"``, the default, with no extra dependency) or MONAI's own `TransformerBlock`
    (``block="monai"``, as in MONAI's `ViT`; needs the optional ``einops``, extra ``monai-vit``). The
    two give different state-dict keys, so a weights file loads into the block it was saved from. The position embeddings
    are learnt for `img_size`; other input sizes (multiples of the patch size) get them interpolated
    (bicubic in 2D, trilinear in 3D), as DINO and timm do.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        img_size: Input side the position embeddings are made for (default 224 in 2D, 96 in 3D).
        patch_size: Patch side.
        hidden_size: Token width (the embedding size).
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide `hidden_size`).
        mlp_dim: Hidden width of the blocks' MLPs (default 4 × `hidden_size`).
        dropout_rate: Dropout inside the blocks.
        block: ``torch`` or ``monai`` transformer blocks (see above).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        img_size: int | None = None,
        patch_size: int = 16,
        hidden_size: int = 192,
        num_layers: int = 6,
        num_heads: int = 3,
        mlp_dim: int | None = None,
        dropout_rate: float = 0.0,
        block: str = "torch",
    ) -> None:
        from monai.networks.blocks import PatchEmbeddingBlock

        super().__init__("vit", spatial_dims, in_channels, hidden_size, mean, std)
        img_size = img_size or (224 if spatial_dims == 2 else 96)
        self.patch_size = int(patch_size)
        self.grid = (img_size // patch_size,) * spatial_dims
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=patch_size,
            hidden_size=hidden_size,
            num_heads=num_heads,
            proj_type="conv",
            pos_embed_type="learnable",
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
        )
        self.blocks = nn.ModuleList(_block(block, hidden_size, num_heads, mlp_dim or 4 * hidden_size, dropout_rate)
                                    for _ in range(num_layers))  # fmt: skip
        self.norm = nn.LayerNorm(hidden_size)

    def _position(self, grid: tuple[int, ...]) -> torch.Tensor:
        pos: torch.Tensor = self.patch_embedding.position_embeddings  # (1, N0, C)
        if grid == self.grid:
            return pos
        c = pos.shape[-1]
        pos = pos.transpose(1, 2).reshape(1, c, *self.grid)  # (1, C, *grid0)
        mode = "bicubic" if self.spatial_dims == 2 else "trilinear"
        pos = F.interpolate(pos, size=grid, mode=mode, align_corners=False)  # (1, C, *grid)
        return pos.flatten(2).transpose(1, 2)  # (1, N, C)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % self.patch_size for s in x.shape[2:]):
            raise ValueError(
                f"vit: input sides {tuple(x.shape[2:])} must be multiples of the patch size {self.patch_size}"
            )
        emb = self.patch_embedding
        t = emb.patch_embeddings(x)  # (B, C, *grid)
        grid = tuple(int(s) for s in t.shape[2:])
        t = t.flatten(2).transpose(1, 2)  # (B, N, C)
        t = emb.dropout(t + self._position(grid))  # (B, N, C)
        for block in self.blocks:
            t = block(t)  # (B, N, C)
        t = self.norm(t)  # (B, N, C)
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], *grid)  # (B, C, *grid)


@register_encoder("vit")
def vit(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
    """A small MONAI ViT; see `ViTEncoder`."""
    return ViTEncoder(spatial_dims, in_channels, **kwargs)
