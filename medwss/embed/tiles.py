"""`TileSet`: where a case's tiles are, stored one HDF5 file per case (``<case_id>.tiles.h5``).

Slides: ``coords`` are the top-left corners of tiles in level-0 pixels (x, y); each tile covers
``tile_size`` pixels at ``mpp`` µm/px, that is ``span`` level-0 pixels, read from ``level``.
Volumes: ``coords`` are the first voxel (i, j, k) of each patch on the volume's canonical RAS+ grid
(`medwss.data.orientation.canonical`: k is the axial axis whatever the stored axis order);
``tile_size`` is its extent in voxels along (i, j, k) (a 2D axial tile has 1 along k, a 2.5D stack
has the stack depth), and ``attrs["orientation"]`` records how the stored grid maps onto the
canonical one (`TileSet.orientation`), so results go back onto the stored grid.
``grid_index`` places every tile on the case's tile grid (row, col[, depth]), ``grid_shape`` is
that grid's size, so aggregators can rebuild the spatial layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.orientation import Orientation
from medwss.errors import CorruptFileError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.io.limits import check_bytes, check_count, limit

TILE_KINDS = ("slide", "axial2d", "stack25d", "patch3d")


@dataclass
class TileSet:
    """The tiles of one case.

    Attributes:
        case_id: Case identifier (manifest ``case_id``).
        source: Path of the image (slide or volume; the first channel for multi-channel cases).
        kind: One of `TILE_KINDS`.
        coords: (N, 2) level-0 (x, y) for slides, (N, 3) voxel (i, j, k) for volumes; int64.
        grid_index: (N, 2) (row, col) for slides and 2D tiles, (N, 3) for 3D patches; int64.
        grid_shape: Size of the tile grid.
        tile_size: Output tile side in pixels (slides) or the patch extent in voxels (volumes).
        tissue_fraction: (N,) fraction of each tile inside the tissue/foreground mask.
        mpp: Target microns per pixel (slides).
        level: Pyramid level the tiles are read from (slides).
        span: Tile side in level-0 pixels (slides).
        spacing: Voxel spacing in mm (volumes).
        attrs: Other facts (tissue detection settings, overlap, the source orientation of volumes, ...).
    """

    case_id: str
    source: str
    kind: str
    coords: np.ndarray
    grid_index: np.ndarray
    grid_shape: tuple[int, ...]
    tile_size: tuple[int, ...]
    tissue_fraction: np.ndarray
    mpp: float | None = None
    level: int | None = None
    span: float | None = None
    spacing: tuple[float, ...] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TILE_KINDS:
            raise ValueError(f"kind must be one of {TILE_KINDS}, got {self.kind!r}")
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2 if self.kind == "slide" else 3)
        grid = np.asarray(self.grid_index, dtype=np.int64)
        self.grid_index = grid.reshape(len(self.coords), grid.shape[-1] if grid.size else self.coords.shape[1])
        self.tissue_fraction = np.asarray(self.tissue_fraction, dtype=np.float32).reshape(len(self.coords))
        self.grid_shape = tuple(int(s) for s in self.grid_shape)
        self.tile_size = tuple(int(s) for s in np.atleast_1d(self.tile_size))

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def orientation(self) -> Orientation | None:
        """How the stored volume maps onto the canonical grid the coords are on (None: slides, old files)."""
        d = self.attrs.get("orientation")
        return Orientation.from_dict(d) if isinstance(d, dict) else None

    def subset(self, index: np.ndarray) -> TileSet:
        """The tiles selected by a boolean mask or an index array (e.g. one rank's share)."""
        return TileSet(
            self.case_id, self.source, self.kind, self.coords[index], self.grid_index[index], self.grid_shape,
            self.tile_size, self.tissue_fraction[index], self.mpp, self.level, self.span, self.spacing, dict(self.attrs),
        )  # fmt: skip


_SCALARS = ("case_id", "source", "kind", "mpp", "level", "span")


def save_tiles(tiles: TileSet, path: str | Path) -> Path:
    """Write a `TileSet` to HDF5, atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("coords", data=tiles.coords)
        f.create_dataset("grid_index", data=tiles.grid_index)
        f.create_dataset("tissue_fraction", data=tiles.tissue_fraction)
        for key in _SCALARS:
            value = getattr(tiles, key)
            if value is not None:
                f.attrs[key] = value
        f.attrs["grid_shape"] = np.asarray(tiles.grid_shape, dtype=np.int64)
        f.attrs["tile_size"] = np.asarray(tiles.tile_size, dtype=np.int64)
        if tiles.spacing is not None:
            f.attrs["spacing"] = np.asarray(tiles.spacing, dtype=np.float64)
        for key, value in tiles.attrs.items():
            if isinstance(value, dict):  # HDF5 attributes hold no mappings: stored as JSON
                f.attrs[f"json_{key}"] = json.dumps(value)
            else:
                f.attrs[f"extra_{key}"] = value
    return Path(path)


def check_tile_size(tile_size: tuple[int, ...] | list[int], path: str | Path | None, channels: int = 1) -> None:
    """Refuse a tile extent that is not positive or whose voxels exceed ``MEDWSS_MAX_TILE_VOXELS``.

    A slide tile of side S has S² pixels (``tile_size`` holds one value); volume patches have
    ``si * sj * sk`` voxels.
    """
    dims = [int(s) for s in tile_size]
    if not dims or min(dims) < 1:
        raise InvalidDataError(f"tile_size {dims} must be positive", path)
    if len(dims) == 1:
        dims = dims * 2
    check_count(f"tile_size {'x'.join(map(str, dims))}: voxels per tile", math.prod(dims) * channels,
                "MEDWSS_MAX_TILE_VOXELS", path)  # fmt: skip


def check_tileset(tiles: TileSet, path: str | Path | None) -> None:
    """Refuse a tile set whose claims would allocate without bound when it is read or embedded.

    Checks: the tile extent (`check_tile_size`), the number of tiles (``MEDWSS_MAX_TILES``), the
    grid's cells (``MEDWSS_MAX_GRID_CELLS``), every grid index inside the grid, and coordinates within
    ``MEDWSS_MAX_COORD``.

    Raises:
        InvalidDataError (`medwss.io.limits.LimitExceededError` for the size limits), naming `path`.
    """
    expected = 1 if tiles.kind == "slide" else 3
    if len(tiles.tile_size) != expected:
        raise InvalidDataError(f"{tiles.kind} tiles need {expected} tile_size value(s), got {tiles.tile_size}", path)
    check_tile_size(tiles.tile_size, path)
    check_count("number of tiles", len(tiles), "MEDWSS_MAX_TILES", path)
    shape = tiles.grid_shape
    if len(shape) != tiles.grid_index.shape[1] or (shape and min(shape) < 1):
        raise InvalidDataError(f"grid_shape {shape} does not fit grid_index of width {tiles.grid_index.shape[1]}", path)
    check_count(f"grid_shape {'x'.join(map(str, shape))}: cells", math.prod(shape), "MEDWSS_MAX_GRID_CELLS", path)
    if len(tiles):
        g = tiles.grid_index
        if bool((g < 0).any()) or bool((g >= np.asarray(shape, dtype=np.int64)).any()):
            raise InvalidDataError(f"grid_index outside grid_shape {shape}", path)
        cap = limit("MEDWSS_MAX_COORD")
        worst = int(np.abs(tiles.coords).max())
        if worst > cap:
            raise InvalidDataError(
                f"a tile coordinate is {worst:,}, over the limit of {cap:,} (MEDWSS_MAX_COORD)", path
            )
    if tiles.span is not None and not (math.isfinite(tiles.span) and tiles.span > 0):
        raise InvalidDataError(f"span {tiles.span} must be a positive number", path)


def _read_dataset(f: Any, name: str, path: Path, width: int | None = None) -> np.ndarray:
    """A small dataset read after its claimed shape is checked (never a group, never over the caps)."""
    import h5py

    d = f[name]
    if not isinstance(d, h5py.Dataset):
        raise InvalidDataError(f"'{name}' is a {type(d).__name__}, not a dataset", path)
    check_count(f"'{name}' rows", int(d.shape[0]) if d.shape else 1, "MEDWSS_MAX_TILES", path)
    check_bytes(f"'{name}'", d.shape, d.dtype.itemsize, "MEDWSS_MAX_BAG_BYTES", path)
    if width is not None and (len(d.shape) != 2 or d.shape[1] != width):
        raise InvalidDataError(f"'{name}' must be N×{width}, got shape {d.shape}", path)
    return d[()]


def load_tiles(path: str | Path) -> TileSet:
    """Read a `TileSet` written by `save_tiles`, refusing one whose claims are over the limits (`check_tileset`).

    Raises:
        CorruptFileError: Not a medwss tile file. InvalidDataError: Claims over the limits, grid out of range.
    """
    import h5py

    p = require_file(path)
    try:
        with h5py.File(p, "r") as f:
            a = dict(f.attrs)
            kind = str(a["kind"])
            if kind not in TILE_KINDS:
                raise CorruptFileError(f"kind {kind!r} is not one of {TILE_KINDS}", p)
            tile_size = tuple(int(v) for v in np.atleast_1d(a["tile_size"]))
            check_tile_size(tile_size, p)
            grid_shape = tuple(int(v) for v in np.atleast_1d(a["grid_shape"]))
            extra = {k[len("extra_") :]: _plain(v) for k, v in a.items() if k.startswith("extra_")}
            extra.update({k[len("json_") :]: json.loads(v) for k, v in a.items() if k.startswith("json_")})
            tiles = TileSet(
                case_id=str(a["case_id"]),
                source=str(a["source"]),
                kind=kind,
                coords=_read_dataset(f, "coords", p, 2 if kind == "slide" else 3),
                grid_index=_read_dataset(f, "grid_index", p),
                grid_shape=grid_shape,
                tile_size=tile_size,
                tissue_fraction=_read_dataset(f, "tissue_fraction", p),
                mpp=float(a["mpp"]) if "mpp" in a else None,
                level=int(a["level"]) if "level" in a else None,
                span=float(a["span"]) if "span" in a else None,
                spacing=tuple(float(s) for s in a["spacing"]) if "spacing" in a else None,
                attrs=extra,
            )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CorruptFileError(f"not a medwss tile file ({exc})", p) from exc
    check_tileset(tiles, p)
    return tiles


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- CLAM and TRIDENT coordinate files -----------------------------------------------------------

TILE_FILE_PATTERNS = ("{}.tiles.h5", "{}.h5", "{}_patches.h5", "patches/{}.h5", "patches/{}_patches.h5")
"""File names looked for under ``--tiles DIR``, for the case id and then the slide's file stem: medwss's
``<case_id>.tiles.h5``, CLAM's ``patches/<slide_id>.h5`` and TRIDENT's ``patches/<name>_patches.h5``."""


def is_medwss_tiles(path: str | Path) -> bool:
    """True if `path` is a tile file written by `save_tiles` (it has the ``kind`` attribute)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "kind" in f.attrs
    except OSError:
        return False


def find_tiles(tiles: str | Path, case_id: str, image: str | Path | None = None, single: bool = False) -> Path | None:
    """The tile file of a case under ``--tiles FILE_OR_DIR``, or None.

    Args:
        tiles: A folder (medwss, CLAM or TRIDENT layout, see `TILE_FILE_PATTERNS`) or one file.
        case_id: The case.
        image: The case's slide, whose file stem CLAM and TRIDENT name their files by.
        single: The manifest has this one case, so a single file given as `tiles` is its file whatever its name.
    """
    p = Path(tiles)
    stems = [case_id] + ([Path(image).stem] if image is not None and Path(image).stem != case_id else [])
    if p.is_file():
        name = p.name
        for suffix in (".tiles.h5", "_patches.h5", ".h5"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return p if single or name in stems else None
    for stem in stems:
        for pattern in TILE_FILE_PATTERNS:
            candidate = p / pattern.format(stem)
            if candidate.is_file():
                return candidate
    return None


def _attr_scalar(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def tiles_from_coords(
    path: str | Path, slide_path: str | Path, case_id: str | None = None, mpp_override: float | None = None
) -> TileSet:
    """A `TileSet` from a CLAM or TRIDENT coordinates file (``coords`` N×2 level-0 x, y, attributes on it).

    The level-0 tile side is TRIDENT's ``patch_size_level0``, else CLAM's ``patch_size`` times the
    ``downsample`` of its ``patch_level`` (read from the slide when the file lacks it), else
    ``patch_size``; tiles are ``patch_size`` pixels, read at ``slide mpp × level-0 side / patch_size``
    µm/px (the resolution CLAM and TRIDENT read them at). Grid indices are the coordinates divided by
    the tile step (TRIDENT's ``overlap`` pixels taken off); the tissue fraction of each tile is
    unknown and recorded as 1. A medwss feature bag works too (its own ``tile_size`` and ``span`` are used).

    Args:
        path: The coordinates ``.h5``.
        slide_path: The slide the coordinates are on.
        case_id: Case id to record (default: the file's ``name`` attribute or stem).
        mpp_override: Level-0 µm/px for slides without it (else TRIDENT's ``level0_magnification``
            gives 10 / magnification µm/px, the usual convention, recorded as ``assumed_slide_mpp``).

    Raises:
        CorruptFileError: No ``coords`` dataset or no ``patch_size``. MissingMetadataError: the slide has no mpp.
        InvalidDataError: Claims over the limits (`check_tileset`).
    """
    import h5py

    from medwss.errors import MissingMetadataError
    from medwss.io.slide import open_slide

    p = require_file(path)
    try:
        with h5py.File(p, "r") as f:
            if "coords" not in f:
                raise CorruptFileError(f"no 'coords' dataset (has: {', '.join(f.keys()) or 'nothing'})", p)
            root = {k: _plain(v) for k, v in f.attrs.items()}
            a = {**root, **{k: _plain(v) for k, v in f["coords"].attrs.items()}}
            coords = np.asarray(_read_dataset(f, "coords", p))
    except OSError as exc:
        raise CorruptFileError(f"not a readable coordinates file ({exc})", p) from exc
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidDataError(f"'coords' must be N×2 (x, y), got shape {coords.shape}", p)
    if not np.issubdtype(coords.dtype, np.number) or (coords.size and not np.isfinite(coords).all()):
        raise InvalidDataError("'coords' hold non-numeric, NaN or infinite values", p)
    if a.get("patch_size") is None and a.get("tile_size") is None:
        raise CorruptFileError("no patch_size attribute on 'coords' (not a CLAM or TRIDENT coordinates file)", p)
    medwss_bag = root.get("span") is not None and root.get("tile_size") is not None  # medwss's own tile geometry
    tile = int(round(_attr_scalar(root["tile_size"] if medwss_bag else a.get("patch_size", a.get("tile_size")))))
    check_tile_size((tile,), p)
    fmt = "trident" if a.get("patch_size_level0") is not None else "clam"
    if medwss_bag:
        fmt = "medwss bag"
    assumed: float | None = None
    with open_slide(slide_path, mpp=mpp_override) as slide:
        if not slide.has_mpp and a.get("level0_magnification"):
            assumed = slide.mpp_override = 10.0 / _attr_scalar(a["level0_magnification"])
        if not slide.has_mpp:
            raise MissingMetadataError(
                "slide has no microns-per-pixel metadata and the coordinates file no level0_magnification; "
                "pass --mpp-override",
                slide_path,
            )
        if medwss_bag:
            span = _attr_scalar(root["span"])
        elif a.get("patch_size_level0") is not None:
            span = _attr_scalar(a["patch_size_level0"])
        else:
            level = int(_attr_scalar(a.get("patch_level") or 0))
            if a.get("downsample") is not None:
                down = _attr_scalar(a["downsample"])
            elif level < slide.level_count:
                down = float(slide.level_downsamples[level])
            else:
                raise InvalidDataError(f"patch_level {level} but the slide has {slide.level_count} levels", p)
            span = tile * down
        if not (math.isfinite(span) and span > 0):
            raise InvalidDataError(f"level-0 tile side {span} must be a positive number", p)
        slide_mpp = float(slide.mpp)
        factor = span / tile
        level = int(slide.best_level_for_downsample(factor))
        dims = [int(v) for v in slide.dimensions]
        power = slide.objective_power
    overlap_px = _attr_scalar(a["overlap"]) if fmt == "trident" and a.get("overlap") is not None else 0.0
    step = span * (1 - min(max(overlap_px, 0.0), tile - 1) / tile)
    coords = np.rint(coords).astype(np.int64)
    if len(coords):
        origin = coords.min(axis=0)
        grid = np.rint((coords - origin) / step).astype(np.int64)[:, ::-1]  # (row, col)
        shape: tuple[int, ...] = tuple(int(v) + 1 for v in grid.max(axis=0))
    else:
        grid, shape = np.zeros((0, 2), np.int64), (1, 1)
    name = case_id or str(a.get("name") or a.get("case_id") or p.stem.removesuffix("_patches"))
    tiles = TileSet(
        case_id=name,
        source=str(slide_path),
        kind="slide",
        coords=coords,
        grid_index=grid,
        grid_shape=shape,
        tile_size=(tile,),
        tissue_fraction=np.ones(len(coords), np.float32),
        mpp=slide_mpp * factor,
        level=level,
        span=span,
        attrs={
            "source_format": fmt,
            "coords_file": str(p),
            "slide_mpp": slide_mpp,
            "dimensions": dims,
            "overlap": float(overlap_px / tile),
            **({"level0_magnification": float(power)} if power else {}),
            **({"assumed_slide_mpp": assumed} if assumed else {}),
        },
    )
    check_tileset(tiles, p)
    return tiles
