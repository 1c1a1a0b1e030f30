"""INSIGHT (Zhang, Chen, Kanan, MLHC 2025): a heatmap from detection and context, pooled by a smooth max.

From patch embeddings, a *detection* module of 1×1 convolutions (per-position Linear layers: they
never mix positions) gives logits ``D``, and a *context* module of stacked 3×3 convolutions (a
wider receptive field, see `ContextStack`) gives logits ``C``; the heatmap is

    H = σ(D) · (1 − σ(C))        (K channels, one per class)

and the case probability is the smooth maximum ``Σ h·e^{αh} / Σ e^{αh}`` of H over all positions.
``aux_loss`` is the spectral-decoupling penalty ``λ·mean(D²)`` on the detection logits.

Two layouts:

- ``layout="grid"`` (default): instance embeddings are placed on the case's tile grid from
  ``grid_index``/``grid_shape`` (Conv2d; Conv3d for ``spatial_dims=3``, with (1, 3, 3) kernels for
  ``kernel="2.5d"``) so that the context module sees neighbouring tiles. Empty cells hold zeros,
  are re-zeroed after every convolution (so they read exactly like padding) and take no part in
  pooling. Instance scores are H at each instance's cell.
  *Bags without ``grid_index``* (from tools that store no coordinates) are handled as isolated
  1×1 cells, with a logged warning: the context module then sees only the instance itself.
  We chose this over an error so that every bag can be scored; the heatmap is then a detection
  map modulated per instance, not a contextual one.
- ``layout="tokens"``: per-tile token maps (N, C, h, w) as in the paper; the convolutions run inside
  each tile, H is (N, K, h, w), the case pools over all positions of all tiles and an instance's
  score is the maximum (``instance_pool="max"``) or mean of its map.

Optional Otsu gating (``gate=True``, inference only): heatmap values below Otsu's threshold of the
case's heatmap are set to 0 in ``scores`` and ``dense`` (``probs`` are unchanged).
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torch import nn

from medwss.errors import ConfigError
from medwss.mil.base import Aggregator, Bag, MILOutput, register_aggregator
from medwss.mil.grid import apply_chunked, check_grid, crop_to_occupied, gather_from_grid, grid_bands, scatter_to_grid
from medwss.mil.pooling import SmoothMaxPool, create_pool

log = logging.getLogger(__name__)


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, *S) maps (the per-position LayerNorm of a 1×1 block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ContextStack(nn.Module):
    """Stacked 3×3 (or 3×3×3, or 1×3×3) convolutions, re-masked after each, then a 1×1 head.

    Args:
        hidden: Channels in and through the stack.
        n_out: Output channels (classes).
        depth: Number of 3×3 convolutions (0: the head alone, a 1×1 convolution).
        spatial_dims: 2 or 3.
        kernel: ``"full"`` (3×3 / 3×3×3) or ``"2.5d"`` (1×3×3, 3D only: context within slices).
        dilated: Dilations 1, 2, 4, ... instead of all 1 (receptive field grows exponentially).
        dropout: Dropout after each convolution.
        block: ``"plain"`` (convolution → ReLU, zero padding) or ``"paper"`` (convolution →
            LayerNorm → GELU with replication padding, as in the authors' public code).
        norm: LayerNorm over channels after each convolution of the plain block too (the paper
            block always has it).
        bias: Initial bias of the 1×1 head (the context logits' starting value).
    """

    def __init__(
        self,
        hidden: int,
        n_out: int,
        depth: int,
        spatial_dims: int = 2,
        kernel: str = "full",
        dilated: bool = False,
        dropout: float = 0.0,
        block: str = "plain",
        norm: bool = False,
        bias: float = 0.0,
    ) -> None:
        super().__init__()
        conv: type[nn.Conv2d] | type[nn.Conv3d] = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        flat = spatial_dims == 3 and kernel == "2.5d"
        pad_mode: Literal["replicate", "zeros"] = "replicate" if block == "paper" else "zeros"
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.halo = 0  # receptive-field radius along the first spatial axis
        for i in range(depth):
            d = 2**i if dilated else 1
            if flat:
                self.convs.append(
                    nn.Conv3d(hidden, hidden, (1, 3, 3), padding=(0, d, d), dilation=(1, d, d), padding_mode=pad_mode)
                )
            else:
                self.convs.append(conv(hidden, hidden, 3, padding=d, dilation=d, padding_mode=pad_mode))
                self.halo += d
            self.norms.append(ChannelNorm(hidden) if block == "paper" or norm else nn.Identity())
        self.act: nn.Module = nn.GELU() if block == "paper" else nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.head = conv(hidden, n_out, 1)
        if self.head.bias is not None:
            nn.init.constant_(self.head.bias, bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Context logits.

        Args:
            x: (B, hidden, *S) feature maps, zero at empty cells.
            mask: (B, 1, *S) 1 at occupied cells, 0 elsewhere; None: all occupied.

        Returns:
            (B, n_out, *S) logits.
        """
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.act(norm(conv(x)))  # (B, hidden, *S)
            if mask is not None:
                x = x * mask
            x = self.drop(x)
        return self.head(x)  # (B, K, *S)


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of `values` (any shape) from a `bins`-bin histogram; a 0-dim tensor."""
    v = values.detach().float().flatten()
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        return v.new_tensor(lo)
    hist = torch.histc(v, bins, min=lo, max=hi)  # (bins,)
    step = (hi - lo) / bins
    centres = lo + (torch.arange(bins, dtype=v.dtype, device=v.device) + 0.5) * step  # (bins,)
    w0 = torch.cumsum(hist, 0)  # (bins,)
    w1 = w0[-1] - w0
    s0 = torch.cumsum(hist * centres, 0)
    m0 = s0 / w0.clamp_min(1e-12)
    m1 = (s0[-1] - s0) / w1.clamp_min(1e-12)
    between = w0 * w1 * (m0 - m1) ** 2  # (bins,)
    return v.new_tensor(lo + (int(between.argmax()) + 1) * step)


@register_aggregator("insight")
class Insight(Aggregator):
    """INSIGHT aggregator (see the module docstring).

    Args:
        in_dim: Channels of the instance embeddings (or token maps).
        n_classes: K (1 for a binary task).
        hidden: Channels after the first reduction (a per-instance Linear, i.e. a 1×1 convolution).
        layout: ``"grid"`` or ``"tokens"``.
        spatial_dims: 2 (slides) or 3 (volumes: ``grid_index`` is (N, 3)); tokens are 2D.
        kernel: ``"full"`` or ``"2.5d"`` (3D only) for the context convolutions.
        detection_depth: Linear (1×1) layers of the detection module (≥ 1).
        context_depth: 3×3 convolutions of the context module (≥ 0; 0 makes it point-wise).
        dilated: Dilate the context convolutions 1, 2, 4, ...
        use_context: False drops the context module: H = σ(D) (an ablation).
        dropout: Dropout after the reduction and inside both modules.
        alpha: Smooth-max sharpness.
        sd_weight: λ of the spectral-decoupling penalty λ·mean(D²) (0: no aux_loss).
        gate: Otsu gating of ``scores``/``dense`` in eval mode.
        instance_pool: How a tile's token map becomes its score (``"max"``, ``"mean"``), tokens layout.
        block: ``"plain"`` (Linear/convolution → ReLU) or ``"paper"`` (→ LayerNorm → GELU, replication
            padding in the context module: the authors' public code).
        logit_bound: Soft bound b on the detection and context logits (``b·tanh(x/b)``), so that
            neither sigmoid can saturate past σ(±b); None: unbounded.
        context_norm: LayerNorm after each context convolution in the plain block (bounds the
            context activations; see `ContextStack`).
        context_bias: Initial bias of the context head (σ(C) starts at σ(context_bias)).
        detection_bias: Initial bias of the detection head (σ(D) starts near σ(detection_bias)).
        crop: Crop the grid to the bounding box of occupied cells (exact; saves memory).
        max_cells: Grid cells convolved at once; larger grids are processed in bands with halos.
        chunk: Instances (or tiles) reduced at once (bounds intermediate memory).
    """

    name = "insight"

    def __init__(
        self,
        in_dim: int,
        n_classes: int = 1,
        hidden: int = 64,
        layout: str = "grid",
        spatial_dims: int = 2,
        kernel: str = "full",
        detection_depth: int = 2,
        context_depth: int = 3,
        dilated: bool = False,
        use_context: bool = True,
        dropout: float = 0.1,
        alpha: float = 8.0,
        sd_weight: float = 1e-4,
        gate: bool = False,
        instance_pool: str = "max",
        block: str = "plain",
        logit_bound: float | None = None,
        context_norm: bool = True,
        context_bias: float = 0.0,
        detection_bias: float = 0.0,
        crop: bool = True,
        max_cells: int = 500_000,
        chunk: int = 65_536,
    ) -> None:
        super().__init__(in_dim, n_classes)
        if layout not in ("grid", "tokens"):
            raise ConfigError(f"INSIGHT layout must be 'grid' or 'tokens', got {layout!r}")
        if spatial_dims not in (2, 3) or (layout == "tokens" and spatial_dims != 2):
            raise ConfigError(f"INSIGHT spatial_dims must be 2 or 3 (2 for tokens), got {spatial_dims}")
        if kernel not in ("full", "2.5d") or (kernel == "2.5d" and spatial_dims != 3):
            raise ConfigError(f"INSIGHT kernel must be 'full' or '2.5d' (3D only), got {kernel!r}")
        if block not in ("plain", "paper"):
            raise ConfigError(f"INSIGHT block must be 'plain' or 'paper', got {block!r}")
        if detection_depth < 1 or context_depth < 0:
            raise ConfigError("INSIGHT needs detection_depth >= 1 and context_depth >= 0")
        self.hidden, self.layout, self.spatial_dims, self.kernel = hidden, layout, spatial_dims, kernel
        self.detection_depth, self.context_depth, self.dilated = detection_depth, context_depth, dilated
        self.use_context, self.dropout, self.alpha, self.sd_weight = use_context, dropout, alpha, sd_weight
        self.gate, self.instance_pool, self.crop = gate, instance_pool, crop
        self.max_cells, self.chunk, self.block = max_cells, chunk, block
        self.logit_bound, self.context_norm = logit_bound, context_norm

        def layer(n_in: int) -> list[nn.Module]:  # a per-position (1×1) layer of the chosen block
            if block == "paper":
                return [nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
            return [nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout)]

        self.project = nn.Sequential(*layer(in_dim))
        det: list[nn.Module] = []
        for _ in range(detection_depth - 1):
            det += layer(hidden)
        head = nn.Linear(hidden, n_classes)
        if head.bias is not None:
            nn.init.constant_(head.bias, detection_bias)
        self.detection = nn.Sequential(*det, head)
        self.context = (
            ContextStack(
                hidden,
                n_classes,
                context_depth,
                spatial_dims,
                kernel,
                dilated,
                dropout,
                block,
                context_norm,
                context_bias,
            )
            if use_context
            else None
        )
        self.pool = SmoothMaxPool(alpha)
        self.tile_pool = create_pool(instance_pool)
        self._warned = False

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Heatmap, case probabilities and the spectral-decoupling penalty of one bag (`label` unused)."""
        n, k = len(bag), self.n_classes
        grid = None
        if bag.grid_index is not None:
            grid = check_grid(bag.grid_index, bag.grid_shape, n)
        if self.layout == "tokens":
            if bag.tokens is None:
                raise ConfigError("INSIGHT layout='tokens' needs bags with token maps (load them with tokens: true)")
            heat, d_logits = self._tiles(bag.tokens.float())  # (N, K, h, w) each
        elif grid is None:
            if not self._warned:
                log.warning("INSIGHT: bag without grid_index; instances are treated as isolated cells (no context)")
                self._warned = True
            cells = bag.features.float().reshape(n, -1, *(1,) * self.spatial_dims)  # (N, C, 1, 1)
            heat, d_logits = self._tiles(cells)  # (N, K, 1, 1)
        else:
            heat, d_logits = self._grid(bag.features.float(), *grid)  # (N, K) each

        probs = self.pool(heat.movedim(1, -1).reshape(-1, k))  # (K,)
        if self.gate and not self.training:
            heat = self._otsu_gate(heat)
        scores = heat if heat.dim() == 2 else self.tile_pool(heat.flatten(2), dim=2)  # (N, K)
        aux = self.sd_weight * d_logits.float().pow(2).mean() if self.sd_weight else None
        dense = None
        if grid is not None:
            dense = scatter_to_grid(scores, *grid)[0]  # (K, *grid_shape)
        return MILOutput(probs=probs, scores=scores, aux_loss=aux, dense=dense)

    def _modules_on(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap and detection logits of per-tile maps (n, C, *t) → (n, K, *t) each."""
        h = self.project(x.movedim(1, -1))  # (n, *t, hidden)
        d = self.detection(h).movedim(-1, 1)  # (n, K, *t)
        if self.context is None:
            return torch.sigmoid(self._bound(d)), d
        c = self.context(h.movedim(-1, 1))  # (n, K, *t)
        return torch.sigmoid(self._bound(d)) * (1 - torch.sigmoid(self._bound(c))), d

    def _tiles(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolutions inside each tile: (N, C, *t) → heatmap and detection logits (N, K, *t)."""
        per = max(1, self.max_cells // max(1, math.prod(tiles.shape[2:])))
        out = apply_chunked(lambda t: torch.cat(self._modules_on(t), dim=1), tiles, per)  # (N, 2K, *t)
        return out[:, : self.n_classes], out[:, self.n_classes :]

    def _grid(
        self, features: torch.Tensor, grid_index: torch.Tensor, grid_shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolutions over the case's grid: (N, C) → heatmap and detection logits (N, K)."""
        if grid_index.shape[1] != self.spatial_dims:
            raise ConfigError(
                f"INSIGHT built with spatial_dims={self.spatial_dims} got a {grid_index.shape[1]}-D grid; "
                f"create it with spatial_dims={grid_index.shape[1]}"
            )
        h = apply_chunked(self.project, features, self.chunk)  # (N, hidden)
        d = self.detection(h)  # (N, K)
        if self.context is None:
            return torch.sigmoid(self._bound(d)), d
        if self.crop:
            grid_index, grid_shape, _ = crop_to_occupied(grid_index)
        owners, parts = [], []
        for band in grid_bands(grid_index, grid_shape, self.max_cells, self.context.halo):
            dense, mask = scatter_to_grid(h[band.instances], band.local_index, band.local_shape)  # (hidden, *S)
            c = self.context(dense[None], mask[None, None].to(dense.dtype))[0]  # (K, *S)
            parts.append(gather_from_grid(c, band.local_index[band.keep]))  # (n_b, K)
            owners.append(band.instances[band.keep])
        c_inst = torch.cat(parts)[torch.argsort(torch.cat(owners))]  # (N, K)
        return torch.sigmoid(self._bound(d)) * (1 - torch.sigmoid(self._bound(c_inst))), d

    def _bound(self, logits: torch.Tensor) -> torch.Tensor:
        """``b·tanh(x/b)`` with b = `logit_bound` (identity when None)."""
        b = self.logit_bound
        return logits if b is None else b * torch.tanh(logits / b)

    @staticmethod
    def _otsu_gate(heat: torch.Tensor) -> torch.Tensor:
        """Zero heatmap values below each class's Otsu threshold: (N, K[, *t]) → same shape."""
        out = heat.clone()
        for j in range(heat.shape[1]):
            v = heat[:, j]
            out[:, j] = torch.where(v >= otsu_threshold(v), v, torch.zeros_like(v))
        return out
