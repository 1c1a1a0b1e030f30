"""A bag's instances on its tile grid: validation, scatter to a dense map, gather back, bands.

A bag of N instances with ``grid_index`` (N, S) (S = 2 for slides, 3 for volumes) lives on a grid
of ``grid_shape``. Convolutions over that grid need a dense ``(C, *grid_shape)`` map; these helpers
build it (`scatter_to_grid`, with the mask of occupied cells), read it back in instance order
(`gather_from_grid`), and keep it small:

- reduce channels per instance *before* scattering (a Linear on (N, C) is a 1×1 convolution that
  never touches empty cells);
- crop to the bounding box of the occupied cells (`crop_to_occupied`);
- split a grid that would still be too large into overlapping bands along its first axis
  (`grid_bands`): each band carries a halo as wide as the receptive field of the convolutions, so
  the values kept from each band are exactly those of the whole grid.

Example:
    >>> idx = torch.tensor([[0, 0], [1, 2]])
    >>> dense, mask = scatter_to_grid(torch.ones(2, 4), idx, (2, 3))
    >>> dense.shape, int(mask.sum())
    (torch.Size([4, 2, 3]), 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from medwss.errors import InvalidDataError
from medwss.io.limits import check_count


def check_grid(
    grid_index: torch.Tensor, grid_shape: tuple[int, ...] | None, n: int
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Validate a bag's grid; returns the index as int64 and the shape (inferred when None).

    Raises:
        InvalidDataError: Wrong shapes, indices outside the grid, or two instances in one cell;
            `medwss.io.limits.LimitExceededError` for a grid of more than ``MEDWSS_MAX_GRID_CELLS`` cells
            (checked before anything of the grid's size is allocated).
    """
    if grid_index.dim() != 2 or grid_index.shape[0] != n or grid_index.shape[1] not in (2, 3):
        raise InvalidDataError(f"grid_index must be (N, 2) or (N, 3) with N = {n}, got {tuple(grid_index.shape)}")
    idx = grid_index.long()
    if grid_shape is None:
        grid_shape = tuple(int(v) + 1 for v in idx.amax(0)) if n else (1,) * idx.shape[1]
    shape = tuple(int(v) for v in grid_shape)
    if len(shape) != idx.shape[1]:
        raise InvalidDataError(f"grid_shape {shape} does not match grid_index with {idx.shape[1]} columns")
    if min(shape) < 1:
        raise InvalidDataError(f"grid_shape {shape} must be positive")
    check_count(f"grid_shape {'x'.join(map(str, shape))}: cells", math.prod(shape), "MEDWSS_MAX_GRID_CELLS", None)
    if n:
        lo, hi = idx.amin(0), idx.amax(0)
        if bool((lo < 0).any()) or any(int(h) >= s for h, s in zip(hi, shape, strict=True)):
            raise InvalidDataError(f"grid_index outside grid_shape {shape}")
        if torch.unique(flat_index(idx, shape)).numel() != n:
            raise InvalidDataError("two instances share one grid cell")
    return idx, shape


def flat_index(grid_index: torch.Tensor, grid_shape: tuple[int, ...]) -> torch.Tensor:
    """Row-major cell number of each instance: (N, S) → (N,)."""
    flat = torch.zeros(grid_index.shape[0], dtype=torch.long, device=grid_index.device)
    for axis, size in enumerate(grid_shape):
        flat = flat * size + grid_index[:, axis].long()
    return flat


def scatter_to_grid(
    values: torch.Tensor, grid_index: torch.Tensor, grid_shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place instance values on their grid (differentiable); empty cells hold 0.

    Args:
        values: (N, C) one row per instance.
        grid_index: (N, S) cell of each instance.
        grid_shape: The grid's size (S values).

    Returns:
        The dense map (C, *grid_shape) and the mask of occupied cells (*grid_shape), bool.
    """
    n_cells = math.prod(grid_shape)
    check_count(f"grid_shape {'x'.join(map(str, grid_shape))}: cells", n_cells, "MEDWSS_MAX_GRID_CELLS", None)
    flat = flat_index(grid_index, grid_shape)  # (N,)
    dense = values.new_zeros(n_cells, values.shape[1]).index_copy(0, flat, values)  # (H*W, C)
    mask = torch.zeros(n_cells, dtype=torch.bool, device=values.device)
    mask[flat] = True
    return dense.t().reshape(values.shape[1], *grid_shape), mask.reshape(grid_shape)  # (C, H, W), (H, W)


def gather_from_grid(dense: torch.Tensor, grid_index: torch.Tensor) -> torch.Tensor:
    """Read a dense map back in instance order: (C, *grid_shape) → (N, C)."""
    shape = tuple(dense.shape[1:])
    flat = flat_index(grid_index, shape)  # (N,)
    return dense.reshape(dense.shape[0], -1)[:, flat].t()  # (N, C)


def crop_to_occupied(grid_index: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """Shift the grid so that its bounding box of occupied cells starts at 0.

    Exact for zero-padded convolutions whose activations are re-masked after every layer: cells
    outside the box are empty, and empty cells read as zeros just like the padding.

    Returns:
        The local index (N, S), the box's shape and its offset in the full grid.
    """
    lo = grid_index.amin(0)  # (S,)
    hi = grid_index.amax(0)  # (S,)
    shape = tuple(int(v) for v in hi - lo + 1)
    return grid_index - lo, shape, tuple(int(v) for v in lo)


@dataclass
class Band:
    """Instances of one band of a grid.

    Attributes:
        instances: (n,) positions in the bag of the instances inside the band and its halo.
        local_index: (n, S) their cells on the band's own grid.
        local_shape: The band's grid shape (halo included).
        keep: (n,) True for the instances the band owns (outside the halo).
    """

    instances: torch.Tensor
    local_index: torch.Tensor
    local_shape: tuple[int, ...]
    keep: torch.Tensor


def grid_bands(grid_index: torch.Tensor, grid_shape: tuple[int, ...], max_cells: int, halo: int) -> list[Band]:
    """Split a grid along its first axis into bands of at most about `max_cells` cells plus a halo.

    Every instance is owned by exactly one band. A grid of at most `max_cells` cells is one band.

    Args:
        grid_index: (N, S) cells of the instances.
        grid_shape: The grid's shape.
        max_cells: Cells per band, halo excluded (at least one row of the first axis).
        halo: Rows added on each side (the receptive-field radius along the first axis).
    """
    n = grid_index.shape[0]
    length, rest = grid_shape[0], math.prod(grid_shape[1:])
    all_idx = torch.arange(n, device=grid_index.device)
    if length * rest <= max_cells:
        return [Band(all_idx, grid_index, grid_shape, torch.ones(n, dtype=torch.bool, device=grid_index.device))]
    rows = max(1, max_cells // rest)
    first = grid_index[:, 0]
    order = torch.argsort(first)  # (N,)
    sorted_first = first[order].contiguous()
    bands = []
    for start in range(0, length, rows):
        stop = min(length, start + rows)
        lo, hi = max(0, start - halo), min(length, stop + halo)
        a, b = (int(v) for v in torch.searchsorted(sorted_first, torch.tensor([lo, hi], device=first.device)))
        inst = order[a:b]
        if inst.numel() == 0:
            continue
        rows_of = first[inst]
        keep = (rows_of >= start) & (rows_of < stop)
        if not bool(keep.any()):
            continue
        local = grid_index[inst].clone()
        local[:, 0] -= lo
        bands.append(Band(inst, local, (hi - lo, *grid_shape[1:]), keep))
    return bands


def dense_scores(
    scores: torch.Tensor, grid_index: torch.Tensor | None, grid_shape: tuple[int, ...] | None
) -> torch.Tensor | None:
    """Instance scores (N, K) as a dense map (K, *grid_shape) when the bag has a grid, else None."""
    if grid_index is None:
        return None
    idx, shape = check_grid(grid_index, grid_shape, scores.shape[0])
    return scatter_to_grid(scores, idx, shape)[0]  # (K, *grid_shape)


def apply_chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int) -> torch.Tensor:
    """`fn` over `x` in chunks of `chunk` rows along dim 0 (bounds intermediates), concatenated."""
    if x.shape[0] <= chunk:
        return fn(x)
    return torch.cat([fn(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)], dim=0)
