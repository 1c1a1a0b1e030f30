"""The feature store: one HDF5 file per case holding its patch embeddings (`FeatureBag`).

Datasets: ``features`` (N×C, float16 or float32), ``coords`` (N×2 level-0 x, y, or N×3 voxel
i, j, k), optional ``tokens`` (N×C×h×w spatial maps) and ``grid_index`` (N×2|3). File attributes:
``encoder``, ``weights_checksum``, ``tile_size``, ``mpp`` or ``spacing``, ``level``, ``grid_shape``,
``case_id``, ``medwss_version``. Bags written by CLAM or TRIDENT (``features`` + ``coords``, their
attributes on ``coords``) load as they are.

Slide bags also carry CLAM's and TRIDENT's tile attributes on the ``coords`` dataset
(`slide_coords_attrs`), so their heatmap and slide-encoder tools read medwss bags: ``patch_size``
and ``patch_level`` (CLAM: the side in pixels at ``patch_level``, so ``patch_size × downsample`` is
the level-0 side), ``downsample``, ``level_dim``, ``downsampled_level_dim``, ``patch_size_level0``
(TRIDENT), ``target_magnification`` and ``level0_magnification`` (when known), ``overlap`` (TRIDENT:
pixels shared with the neighbour at the target resolution) and ``name`` (the case id).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medwss import __version__
from medwss.errors import CorruptFileError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.io.limits import check_bytes, check_count, limit

_BAG_NAN: contextvars.ContextVar[str] = contextvars.ContextVar("medwss_bag_nan", default="raise")


@contextlib.contextmanager
def bag_nan_policy(policy: Literal["raise", "keep"]) -> Iterator[None]:
    """Within the block, `load_bag` refuses (``raise``, the default) or keeps (``keep``) NaN/inf features.

    ``mil predict|heatmap --nan keep`` uses it; kept NaN features give NaN scores.
    """
    token = _BAG_NAN.set(policy)
    try:
        yield
    finally:
        _BAG_NAN.reset(token)


@dataclass
class FeatureBag:
    """One case's patch embeddings.

    Attributes:
        features: (N, C) embeddings.
        coords: (N, 2) or (N, 3) tile positions (level-0 pixels or voxel indices), or None if unknown.
        tokens: Optional (N, C, h, w) spatial token maps.
        grid_index: Optional (N, 2|3) position of each tile on the case's tile grid.
        attrs: Encoder name, weights checksum, tile size, mpp or spacing, level, grid shape, ...
        path: The file it was read from.
        coords_attrs: Extra attributes written on the ``coords`` dataset (CLAM/TRIDENT layout), on top
            of those `slide_coords_attrs` derives from `attrs`.
    """

    features: np.ndarray
    coords: np.ndarray | None
    tokens: np.ndarray | None = None
    grid_index: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    coords_attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def grid_shape(self) -> tuple[int, ...] | None:
        g = self.attrs.get("grid_shape")
        return tuple(int(v) for v in g) if g is not None else None


def save_bag(bag: FeatureBag, path: str | Path, dtype: str = "float16") -> Path:
    """Write a bag to HDF5 atomically (a half-written file never carries the final name).

    Args:
        bag: The bag.
        path: Output ``.h5``.
        dtype: Storage type of ``features`` and ``tokens``: ``float16`` (half the disk) or ``float32``.
    """
    import h5py

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    feats = np.asarray(bag.features)
    if feats.ndim != 2:
        raise InvalidDataError(f"features must be N×C, got shape {feats.shape}", path)
    if bag.coords is not None and len(bag.coords) != len(feats):
        raise InvalidDataError(f"{len(feats)} features but {len(bag.coords)} coords", path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=feats.astype(dtype))
        if bag.coords is not None:
            d = f.create_dataset("coords", data=np.asarray(bag.coords, dtype=np.int64))
            for key, value in {**slide_coords_attrs(bag.attrs), **bag.coords_attrs}.items():
                if value is not None:
                    d.attrs[key] = np.asarray(value) if isinstance(value, (list, tuple)) else value
        if bag.tokens is not None:
            f.create_dataset("tokens", data=np.asarray(bag.tokens).astype(dtype), chunks=True, compression="lzf")
        if bag.grid_index is not None:
            f.create_dataset("grid_index", data=np.asarray(bag.grid_index, dtype=np.int64))
        for key, value in {**bag.attrs, "medwss_version": __version__}.items():
            if value is not None:
                f.attrs[key] = np.asarray(value) if isinstance(value, (list, tuple)) else value
    return Path(path)


def slide_coords_attrs(
    attrs: dict[str, Any],
    level_downsample: float | None = None,
    level_dim: Sequence[int] | None = None,
    objective_power: float | None = None,
    slide_mpp: float | None = None,
    overlap: float | None = None,
) -> dict[str, Any]:
    """CLAM's and TRIDENT's ``coords`` attributes for a slide bag with medwss attributes `attrs`.

    Args:
        attrs: The bag's attributes (``kind``, ``tile_size``, ``span``, ``level``, ``mpp``, ``case_id``).
        level_downsample: Downsample of level ``level`` (None: unknown; then ``patch_level`` is 0 and
            ``patch_size`` the level-0 side, which reads the same region).
        level_dim: (width, height) of level ``level``.
        objective_power: The slide's objective power (``level0_magnification``).
        slide_mpp: Level-0 microns per pixel (with `objective_power`, gives ``target_magnification``;
            without it, the target magnification is written by the 10 / mpp convention, 20x at 0.5 µm/px).
        overlap: medwss's overlap fraction; written as TRIDENT's pixels at the target resolution.

    Returns:
        The attributes (empty for volume bags or bags without ``span``).
    """
    if attrs.get("kind") not in (None, "slide") or attrs.get("span") is None or attrs.get("tile_size") is None:
        return {}
    span = float(attrs["span"])
    tile = int(np.atleast_1d(attrs["tile_size"])[0])
    known = level_downsample is not None and attrs.get("level") is not None
    d = float(level_downsample) if known else 1.0  # type: ignore[arg-type]
    out: dict[str, Any] = {
        "patch_size": int(round(span / d)),
        "patch_level": int(attrs["level"]) if known else 0,
        "downsample": [d, d],
        "patch_size_level0": int(round(span)),
        "name": str(attrs.get("case_id", "")),
    }
    if level_dim is not None and known:
        out["level_dim"] = [int(v) for v in level_dim]
        out["downsampled_level_dim"] = [int(v) for v in level_dim]
    mpp = attrs.get("mpp")
    if objective_power:
        out["level0_magnification"] = float(objective_power)
        if slide_mpp and mpp:
            out["target_magnification"] = round(float(objective_power) * float(slide_mpp) / float(mpp), 3)
    elif mpp:
        out["target_magnification"] = round(10.0 / float(mpp), 3)
    if overlap is not None:
        out["overlap"] = int(round(float(overlap) * tile))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_bag(path: str | Path, tokens: bool = False) -> FeatureBag:
    """Read a bag: medwss's own, or one written by CLAM or TRIDENT (``features`` + ``coords``).

    A CLAM ``.pt`` file (a features tensor only) loads too, with ``coords`` None.

    Args:
        path: ``.h5`` (or CLAM ``.pt``) file.
        tokens: Also read the token maps (can be large).
    """
    p = require_file(path)
    if p.suffix == ".pt":
        import torch

        try:
            feats = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CorruptFileError(f"not a features tensor ({exc})", p) from exc
        return FeatureBag(np.asarray(feats, dtype=np.float32).reshape(len(feats), -1), None, path=str(p))
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "features" not in f:
                raise CorruptFileError(f"no 'features' dataset (has: {', '.join(f.keys()) or 'nothing'})", p)
            feats = _dataset(f, "features", p)
            if feats.ndim == 3 and feats.shape[0] == 1:  # some tools store (1, N, C)
                feats = feats[0]
            coords = _dataset(f, "coords", p) if "coords" in f else None
            if coords is not None and coords.ndim == 3 and coords.shape[0] == 1:
                coords = coords[0]
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if "coords" in f:  # CLAM and TRIDENT keep patch size and level on coords
                for k, v in f["coords"].attrs.items():
                    attrs.setdefault(k, _plain(v))
            tok = _dataset(f, "tokens", p) if tokens and "tokens" in f else None
            grid = _dataset(f, "grid_index", p) if "grid_index" in f else None
    except OSError as exc:
        raise CorruptFileError(f"not a readable HDF5 feature bag ({exc})", p) from exc
    if feats.ndim != 2:
        raise CorruptFileError(f"'features' must be N×C, got shape {feats.shape}", p)
    if not np.issubdtype(feats.dtype, np.number) or np.iscomplexobj(feats):
        raise CorruptFileError(f"'features' must be real numbers, got {feats.dtype}", p)
    if coords is not None and len(coords) != len(feats):
        raise CorruptFileError(f"{len(feats)} features but {len(coords)} coords", p)
    check_bag(feats, coords, grid, attrs, p)
    return FeatureBag(feats, coords, tok, grid, attrs, str(p))


def _dataset(f: Any, name: str, path: Path) -> np.ndarray:
    """Read dataset `name` after checking that it is one and that its claimed size is under ``MEDWSS_MAX_BAG_BYTES``."""
    import h5py

    d = f[name]
    if not isinstance(d, h5py.Dataset):
        raise CorruptFileError(f"'{name}' is a {type(d).__name__}, not a dataset", path)
    if d.shape is None:
        raise CorruptFileError(f"'{name}' is an empty dataset", path)
    check_bytes(f"'{name}'", d.shape, d.dtype.itemsize, "MEDWSS_MAX_BAG_BYTES", path)
    return np.asarray(d[()])


def check_bag(
    features: np.ndarray, coords: np.ndarray | None, grid_index: np.ndarray | None, attrs: dict, path: str | Path
) -> None:
    """Refuse a bag whose values or claims would give NaN scores or unbounded allocations downstream.

    Checks: every feature finite; ``grid_shape`` 2 or 3 positive sizes with at most
    ``MEDWSS_MAX_GRID_CELLS`` cells; ``grid_index`` (N, len(grid_shape)) inside the grid; coordinates
    within ``MEDWSS_MAX_COORD``.

    Raises:
        InvalidDataError (`medwss.io.limits.LimitExceededError` for the size limits), naming `path`.
    """
    if features.size and _BAG_NAN.get() != "keep" and not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise InvalidDataError(
            f"{bad} of {len(features)} feature rows hold NaN or infinite values; re-embed (or --nan keep)", path
        )
    cap = limit("MEDWSS_MAX_COORD")
    if coords is not None and coords.size:
        c = np.asarray(coords)
        if not np.issubdtype(c.dtype, np.number) or not np.isfinite(c).all():
            raise InvalidDataError("coords hold non-numeric, NaN or infinite values", path)
        worst = float(np.abs(c).max())
        if worst > cap:
            raise InvalidDataError(f"a coordinate is {worst:,.0f}, over the limit of {cap:,} (MEDWSS_MAX_COORD)", path)
    shape_attr = attrs.get("grid_shape")
    shape: tuple[int, ...] | None = None
    if shape_attr is not None:
        try:
            shape = tuple(int(v) for v in np.atleast_1d(np.asarray(shape_attr, dtype=np.float64)))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidDataError(f"grid_shape {shape_attr!r} is not a list of sizes", path) from exc
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InvalidDataError(f"grid_shape {list(shape)} must be 2 or 3 positive sizes", path)
        check_count(f"grid_shape {'x'.join(map(str, shape))}: cells", int(np.prod(shape, dtype=object)),
                    "MEDWSS_MAX_GRID_CELLS", path)  # fmt: skip
    if grid_index is not None:
        g = np.asarray(grid_index)
        if g.ndim != 2 or len(g) != len(features) or g.shape[1] not in (2, 3):
            raise InvalidDataError(f"grid_index must be (N, 2|3) with N = {len(features)}, got {g.shape}", path)
        if not np.issubdtype(g.dtype, np.integer):
            raise InvalidDataError(f"grid_index must hold integers, got {g.dtype}", path)
        if len(g):
            if shape is not None:
                if len(shape) != g.shape[1]:
                    raise InvalidDataError(
                        f"grid_shape {list(shape)} does not match grid_index of width {g.shape[1]}", path
                    )
                if bool((g < 0).any()) or bool((g >= np.asarray(shape)).any()):
                    raise InvalidDataError(f"grid_index outside grid_shape {list(shape)}", path)
            elif bool((g < 0).any()):
                raise InvalidDataError("grid_index has negative cells", path)
            else:  # the grid is inferred from the largest index: bound it the same way
                inferred = [int(v) + 1 for v in g.max(axis=0)]
                check_count(f"grid implied by grid_index ({'x'.join(map(str, inferred))}): cells",
                            int(np.prod(inferred, dtype=object)), "MEDWSS_MAX_GRID_CELLS", path)  # fmt: skip


def bag_is_done(path: str | Path, encoder: str | None = None, expect: dict[str, Any] | None = None) -> bool:
    """True if a finished bag exists at `path` (written atomically, so existence means finished).

    With `encoder`, the bag must also have been made by that encoder; with `expect`, every key of
    it must be an attribute of the bag with that value (see `bag_mismatch`).
    """
    p = Path(path)
    if not p.is_file():
        return False
    if encoder is None and not expect:
        return True
    return bag_mismatch(p, {**({"encoder": encoder} if encoder is not None else {}), **(expect or {})}) is None


def bag_mismatch(path: str | Path, expect: dict[str, Any]) -> str | None:
    """None if the bag at `path` has every attribute of `expect` with that value, else why not (one line).

    Used by resume: a bag is kept only when it was made by the same encoder (name, weights checksum
    or random-init seed) from the same tile file.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            have = {k: _plain(f.attrs.get(k)) for k in expect}
    except OSError as exc:
        return f"unreadable ({exc})"
    diffs = [f"{k} {have[k]!r} (now {v!r})" for k, v in expect.items() if have[k] != v]
    return "made with " + ", ".join(diffs) if diffs else None
