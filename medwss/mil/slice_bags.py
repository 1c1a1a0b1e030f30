"""Slice-level MIL bags from volumes: each axial slice is a bag, its in-plane tiles are the instances.

For volumes with a voxel mask (a tumour, a lesion), a slice's label is whether the mask touches it;
the instances are the tiles of the slice on a regular grid (``grid_index``/``grid_shape`` set, so
grid aggregators such as INSIGHT see neighbouring tiles), embedded by any `medwss.embed` encoder.
The mask is kept beside each bag so a heatmap can be scored against it in pixels.

Steps, each usable alone:

- `load_case_slices`: the case's channels, scaled to [0, 1], stacked channel-first on the
  canonical grid (axial = last axis), and its mask.
- `foreground`: a simple intensity rule for "brain" (or body) pixels.
- `choose_slices`: the slices with mask (positives) and a seeded sample of slices without it
  (negatives), both only among slices with enough foreground.
- `slice_tiles`: the tiles of one slice with enough foreground, with grid index and coordinates.
- `build_slice_bags`: all of the above for a list of cases, encoded into `LabelledBag`s.
- `pixel_heatmap`: per-tile scores back on the slice's pixels (each tile's value over its pixels).

Example:
    >>> from medwss.embed.encoders import create_encoder
    >>> bags, failures = build_slice_bags(cases, create_encoder("stats", 2, 3), tile=16)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medwss.data.manifest import Case
from medwss.errors import InvalidDataError, MedwssError
from medwss.mil.base import Bag
from medwss.mil.data import LabelledBag

log = logging.getLogger(__name__)


@dataclass
class CaseSlices:
    """One case's channels and mask on the canonical grid.

    Attributes:
        case: The manifest row.
        image: (C, H, W, S) float32 in [0, 1]; slices along the last axis.
        mask: (H, W, S) bool, or None when the case has no mask.
    """

    case: Case
    image: np.ndarray
    mask: np.ndarray | None


@dataclass
class SliceTiles:
    """The kept tiles of one slice.

    Attributes:
        tiles: (N, C, t, t) float32 in [0, 1].
        grid_index: (N, 2) (row, col) on the slice's tile grid.
        grid_shape: (rows, cols) of that grid.
        coords: (N, 2) (x, y) pixel position of each tile's first pixel (medwss's 2D coordinate order).
        foreground: (N,) foreground fraction of each tile.
    """

    tiles: np.ndarray
    grid_index: np.ndarray
    grid_shape: tuple[int, int]
    coords: np.ndarray
    foreground: np.ndarray


@dataclass
class SliceBag:
    """A slice as a labelled bag, with what scoring its heatmap needs.

    Attributes:
        item: The bag and its target; ``item.case`` is the volume's row with ``case_id``
            ``<case_id>_z<slice>`` and ``meta["slice"]``, ``meta["volume"]`` set.
        mask: (H, W) bool mask of the slice, or None.
        tile: Tile side in pixels.
        shape: (H, W) of the slice.
        tile_means: (N, C) mean intensity of each tile per channel (for intensity baselines).
    """

    item: LabelledBag
    mask: np.ndarray | None
    tile: int
    shape: tuple[int, int]
    tile_means: np.ndarray | None = None


def _scale(array: np.ndarray) -> np.ndarray:
    """Intensities to [0, 1]: integer types by their range (uint8 / 255), floats by their min and max."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def load_case_slices(case: Case, channels: Sequence[str] | None = None) -> CaseSlices:
    """Load `channels` (image keys of the case; default: all, in manifest order) and the mask.

    Every channel and the mask are put on the canonical RAS+ grid (`medwss.data.orientation.canonical`),
    so the slices are axial whatever the stored axis order.

    Raises:
        InvalidDataError: A channel is missing, not 3D, or not on the grid of the first one (naming the file).
    """
    from medwss.data.orientation import canonical
    from medwss.io.volumes import load_volume

    names = list(channels) if channels is not None else list(case.images)
    arrays = []
    shape: tuple[int, ...] | None = None
    for name in names:
        if name not in case.images:
            raise InvalidDataError(f"case {case.case_id} has no image {name!r} (has {sorted(case.images)})", case.image)
        vol, _ = canonical(load_volume(case.images[name]))
        if vol.array.ndim != 3:
            raise InvalidDataError(f"expected a 3D volume, got shape {vol.array.shape}", case.images[name])
        if shape is not None and vol.array.shape != shape:
            raise InvalidDataError(f"shape {vol.array.shape} differs from the case's {shape}", case.images[name])
        shape = vol.array.shape
        arrays.append(_scale(vol.array))
    mask = None
    if case.mask is not None:
        mvol, _ = canonical(load_volume(case.mask))
        if mvol.array.shape != shape:
            raise InvalidDataError(f"mask shape {mvol.array.shape} differs from the image's {shape}", case.mask)
        mask = np.asarray(mvol.array) > 0
    return CaseSlices(case, np.stack(arrays), mask)


def foreground(image: np.ndarray, channel: int = 0, threshold: float = 20 / 255) -> np.ndarray:
    """Foreground pixels: channel `channel` of (C, H, W[, S]) above `threshold` (in [0, 1] units).

    On the LGG FLAIR slices background is 0–6 / 255 and brain tissue 20 / 255 and more.
    """
    return np.asarray(image[channel]) > threshold


def choose_slices(
    mask: np.ndarray | None,
    fg: np.ndarray,
    rng: np.random.Generator,
    min_foreground: float = 0.1,
    negatives_per_positive: float = 1.0,
    min_negatives: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Slices to use and their labels: all positives and a seeded sample of negatives.

    Args:
        mask: (H, W, S) bool; a slice is positive when any of its pixels is set. None: all negative.
        fg: (H, W, S) bool foreground (`foreground`).
        rng: Random generator for the negatives' sample.
        min_foreground: Slices with a smaller foreground fraction are skipped (positives too,
            so both classes come from the same range of slices).
        negatives_per_positive: Negatives sampled per positive slice of the case (the rest of the
            case's negatives are dropped); at least `min_negatives`.
        min_negatives: Negatives kept even in a case with few positives.

    Returns:
        (indices (M,), labels (M,)) sorted by slice index.
    """
    n_slices = fg.shape[-1]
    frac = fg.reshape(-1, n_slices).mean(0)  # (S,)
    ok = frac >= min_foreground
    pos = np.zeros(n_slices, bool) if mask is None else mask.reshape(-1, n_slices).any(0)
    positives = np.flatnonzero(pos & ok)
    negatives = np.flatnonzero(~pos & ok)
    k = min(len(negatives), max(min_negatives, int(round(negatives_per_positive * len(positives)))))
    negatives = np.sort(rng.choice(negatives, k, replace=False)) if k else negatives[:0]
    idx = np.concatenate([positives, negatives])
    order = np.argsort(idx, kind="stable")
    labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(len(negatives), np.int64)])
    return idx[order], labels[order]


def slice_tiles(image: np.ndarray, fg: np.ndarray, tile: int, min_foreground: float = 0.25) -> SliceTiles:
    """The tiles of one slice on a regular grid that hold at least `min_foreground` foreground.

    Args:
        image: (C, H, W) in [0, 1].
        fg: (H, W) bool foreground.
        tile: Tile side in pixels; a border narrower than a tile is dropped.
        min_foreground: Minimum foreground fraction of a kept tile.
    """
    c, h, w = image.shape
    rows, cols = h // tile, w // tile
    if rows == 0 or cols == 0:
        raise ValueError(f"tile {tile} is larger than the slice {h}×{w}")
    blocks = image[:, : rows * tile, : cols * tile].reshape(c, rows, tile, cols, tile).transpose(1, 3, 0, 2, 4)
    frac = fg[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile).mean((1, 3))  # (rows, cols)
    r, q = np.nonzero(frac >= min_foreground - 1e-9)
    return SliceTiles(
        tiles=np.ascontiguousarray(blocks[r, q], dtype=np.float32),  # (N, C, t, t)
        grid_index=np.stack([r, q], 1).astype(np.int64),
        grid_shape=(rows, cols),
        coords=np.stack([q * tile, r * tile], 1).astype(np.int64),
        foreground=frac[r, q].astype(np.float32),
    )


@torch.no_grad()
def _encode(encoder: torch.nn.Module, tiles: np.ndarray, batch_size: int, device: torch.device | str) -> np.ndarray:
    """Pooled embeddings (N, D) of tiles (N, C, t, t), in eval mode, in batches."""
    encoder = encoder.to(device).eval()
    x = torch.from_numpy(tiles)
    out = [encoder(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def case_slice_bags(
    data: CaseSlices,
    encoder: torch.nn.Module,
    rng: np.random.Generator,
    tile: int = 16,
    min_slice_foreground: float = 0.1,
    min_tile_foreground: float = 0.25,
    negatives_per_positive: float = 1.0,
    fg_channel: int = 0,
    fg_threshold: float = 20 / 255,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> list[SliceBag]:
    """The chosen slices of one case as encoded bags (see `choose_slices`, `slice_tiles`).

    A chosen slice without any tile that passes `min_tile_foreground` is skipped (logged).
    """
    fg = foreground(data.image, fg_channel, fg_threshold)  # (H, W, S)
    idx, labels = choose_slices(data.mask, fg, rng, min_slice_foreground, negatives_per_positive)
    parts: list[tuple[int, int, SliceTiles]] = []
    for k, y in zip(idx.tolist(), labels.tolist(), strict=True):
        st = slice_tiles(data.image[..., k], fg[..., k], tile, min_tile_foreground)
        if len(st.tiles) == 0:
            log.info("%s: slice %d has no tile with foreground; skipped", data.case.case_id, k)
            continue
        parts.append((k, y, st))
    if not parts:
        return []
    feats = _encode(encoder, np.concatenate([p[2].tiles for p in parts]), batch_size, device)  # (ΣN, D)
    out, start = [], 0
    h, w = data.image.shape[1:3]
    for k, y, st in parts:
        f = feats[start : start + len(st.tiles)]
        start += len(st.tiles)
        case = dataclasses.replace(
            data.case,
            case_id=f"{data.case.case_id}_z{k:03d}",
            label=int(y),
            meta={**data.case.meta, "slice": str(k), "volume": data.case.case_id},
        )
        bag = Bag(
            features=torch.from_numpy(np.ascontiguousarray(f)),
            grid_index=torch.from_numpy(st.grid_index),
            grid_shape=st.grid_shape,
            coords=torch.from_numpy(st.coords),
        )
        mask = None if data.mask is None else data.mask[..., k].copy()
        means = st.tiles.mean(axis=(2, 3))  # (N, C)
        out.append(SliceBag(LabelledBag(case, bag, torch.tensor([float(y)])), mask, tile, (h, w), means))
    return out


def build_slice_bags(
    cases: Sequence[Case],
    encoder: torch.nn.Module,
    seed: int = 0,
    channels: Sequence[str] | None = None,
    **kwargs: Any,
) -> tuple[list[SliceBag], list[dict[str, str]]]:
    """Slice bags of every case; a case that fails to load is skipped and reported.

    Args:
        cases: Manifest rows with images (and masks: slices of a case without one are all negative).
        encoder: Any `medwss.embed` encoder (``(B, C, t, t)`` in [0, 1] → ``(B, D)``), used in eval mode.
        seed: Seed of the negatives' sample (one generator per case, from ``(seed, case index)``).
        channels: Image keys stacked as the tiles' channels (default: all).
        **kwargs: Options of `case_slice_bags` (``tile``, ``min_slice_foreground``, ...).

    Returns:
        (bags in case and slice order, failures as ``{"case_id", "error"}``).
    """
    bags: list[SliceBag] = []
    failures: list[dict[str, str]] = []
    for i, case in enumerate(cases):
        try:
            data = load_case_slices(case, channels)
            bags += case_slice_bags(data, encoder, np.random.default_rng([seed, i]), **kwargs)
        except (MedwssError, OSError, ValueError) as exc:
            log.warning("slice bags: case %s skipped: %s", case.case_id, exc)
            failures.append({"case_id": case.case_id, "error": str(exc)})
    return bags, failures


def pixel_heatmap(
    scores: np.ndarray | torch.Tensor, grid_index: np.ndarray | torch.Tensor, tile: int, shape: tuple[int, int]
) -> np.ndarray:
    """Per-tile scores (N,) on the slice's pixels (H, W): each tile's score over its pixels, 0 elsewhere."""
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    gi = np.asarray(grid_index, dtype=np.int64)
    out = np.zeros(shape, np.float32)
    rows, cols = shape[0] // tile, shape[1] // tile
    grid = np.zeros((rows, cols), np.float32)
    grid[gi[:, 0], gi[:, 1]] = s
    out[: rows * tile, : cols * tile] = np.repeat(np.repeat(grid, tile, 0), tile, 1)
    return out
