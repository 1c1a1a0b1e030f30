"""`stats`: a weight-free handcrafted encoder, a fast baseline that needs no training.

Per input channel and per cell of a coarse grid (4 × 4, or 4 × 4 × 4 in 3D) it measures: a
16-bin intensity histogram over [0, 1], mean, standard deviation, the 10th/50th/90th percentiles,
mean and standard deviation of the gradient magnitude, the mean local standard deviation (3×3[×3]
window) and a co-occurrence contrast (root mean squared difference of pixels 1 and 2 apart along
each axis, GLCM contrast without quantisation). The token map is ``(B, C_in·26, 4, 4[, 4])``; its
average is the embedding (the histogram averaged over cells is the tile's histogram).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from medwss.embed.encoders.base import Encoder, register_encoder

STAT_NAMES = ("mean", "std", "p10", "p50", "p90", "grad_mean", "grad_std", "local_std", "contrast1", "contrast2")
"""The statistics after the histogram, per channel, in token-map order."""
PERCENTILES = (0.1, 0.5, 0.9)
FINE = 16  # percentiles are read from a histogram of bins × FINE bins (256 by default)


class StatsEncoder(Encoder):
    """Histogram, moment, percentile, gradient and texture statistics on a coarse grid of cells.

    Inputs are used as they are (in [0, 1]); there is no normalisation and no parameter.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        bins: Histogram bins over [0, 1].
        cells: Cells per side of the token grid (fewer when the tile is smaller than that).
    """

    def __init__(self, spatial_dims: int, in_channels: int, bins: int = 16, cells: int = 4) -> None:
        per_channel = bins + len(STAT_NAMES)
        super().__init__("stats", spatial_dims, in_channels, in_channels * per_channel, mean=0.0, std=1.0)
        self.bins = int(bins)
        self.cells = int(cells)
        names = [f"hist{i:02d}" for i in range(bins)] + list(STAT_NAMES)
        self.feature_names = [f"c{c}_{n}" for c in range(in_channels) for n in names]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(0, 1)  # (B, C, *S)
        grid = tuple(min(self.cells, int(s)) for s in x.shape[2:])
        v = _cells(x, grid)  # (B, C, *g, n)
        n = v.shape[-1]
        fine = self.bins * FINE
        idx = (v * fine).long().clamp_(0, fine - 1)
        counts = torch.zeros(*v.shape[:-1], fine, dtype=v.dtype, device=v.device)
        counts.scatter_add_(-1, idx, torch.ones_like(v))  # (B, C, *g, bins·FINE)
        hist = counts.unflatten(-1, (self.bins, FINE)).sum(-1) / n  # (B, C, *g, bins)
        cdf = counts.cumsum(-1).contiguous()
        q = torch.tensor(PERCENTILES, dtype=v.dtype, device=v.device) * n
        pct = (torch.searchsorted(cdf, q.expand(*cdf.shape[:-1], -1).contiguous()) + 0.5) / fine  # (B, C, *g, 3)
        grad = _cells(_gradient_magnitude(x), grid)  # (B, C, *g, n)
        local = _cells(_local_variance(x).sqrt(), grid).mean(-1)  # (B, C, *g)
        contrast = [_cells(_contrast(x, d), grid).mean(-1).sqrt() for d in (1, 2)]  # each (B, C, *g)
        mean = v.mean(-1)
        std = (v.square().mean(-1) - mean.square()).clamp(min=0).sqrt()
        gmean = grad.mean(-1)
        gstd = (grad.square().mean(-1) - gmean.square()).clamp(min=0).sqrt()
        stats = torch.stack([mean, std, gmean, gstd, local, *contrast], dim=-1)  # (B, C, *g, 7)
        feats = torch.cat([hist, stats[..., :2], pct.clamp(max=1), stats[..., 2:]], dim=-1)  # (B, C, *g, F)
        b, c = feats.shape[:2]
        perm = (0, 1, x.ndim) + tuple(range(2, x.ndim))
        return feats.permute(perm).reshape(b, c * feats.shape[-1], *grid)  # (B, C·F, *g)


def _cells(x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Split ``(B, C, *S)`` into ``(B, C, *grid, n)`` cells (the remainder of uneven sides is dropped)."""
    b, c = x.shape[:2]
    sizes = [s // g for s, g in zip(x.shape[2:], grid, strict=True)]
    x = x[(slice(None), slice(None), *(slice(0, g * s) for g, s in zip(grid, sizes, strict=True)))]
    split = [d for g, s in zip(grid, sizes, strict=True) for d in (g, s)]
    x = x.reshape(b, c, *split)  # (B, C, g0, s0, g1, s1[, g2, s2])
    k = len(grid)
    perm = (0, 1, *(2 + 2 * i for i in range(k)), *(3 + 2 * i for i in range(k)))
    return x.permute(perm).reshape(b, c, *grid, -1)  # (B, C, *g, n)


def _padded(x: torch.Tensor) -> torch.Tensor:
    """`x` with one replicated pixel on each side of every spatial axis."""
    return F.pad(x, (1, 1) * (x.ndim - 2), mode="replicate")


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Central-difference gradient magnitude (replicated edges), ``(B, C, *S)``."""
    p = _padded(x)
    total = torch.zeros_like(x)
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        inner = [slice(1, s + 1) for s in x.shape[2:]]
        hi, lo = list(inner), list(inner)
        hi[axis - 2], lo[axis - 2] = slice(2, n + 2), slice(0, n)
        d = (p[(slice(None), slice(None), *hi)] - p[(slice(None), slice(None), *lo)]) * 0.5
        total += d * d
    return total.sqrt()  # (B, C, *S)


def _local_variance(x: torch.Tensor) -> torch.Tensor:
    """Variance in a 3-pixel window (3×3 or 3×3×3, replicated edges), ``(B, C, *S)``."""
    m, m2 = _box3(x), _box3(x * x)
    return (m2 - m * m).clamp_(min=0)  # (B, C, *S)


def _box3(x: torch.Tensor) -> torch.Tensor:
    """Separable mean over a window of 3 pixels per axis."""
    y = _padded(x)
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        y = (y.narrow(axis, 0, n) + y.narrow(axis, 1, n) + y.narrow(axis, 2, n)) / 3
    return y


def _contrast(x: torch.Tensor, d: int) -> torch.Tensor:
    """Mean over axes of the squared difference to the pixel `d` further along, ``(B, C, *S)`` (0 at the far edge)."""
    out = torch.zeros_like(x)
    axes = 0
    for dim in range(2, x.ndim):
        n = x.shape[dim]
        if n <= d:
            continue
        diff = x.narrow(dim, d, n - d) - x.narrow(dim, 0, n - d)
        out.narrow(dim, 0, n - d).add_(diff * diff)
        axes += 1
    return out / max(axes, 1)  # (B, C, *S)


@register_encoder("stats", parametric=False)
def stats(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
    """The weight-free statistics encoder; see `StatsEncoder`."""
    return StatsEncoder(spatial_dims, in_channels, **kwargs)
