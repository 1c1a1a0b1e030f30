"""Mosaic slides from real tiles: labelled H&E tiles (EBHI-Seg) assembled into whole-slide images with exact truth.

`build_mosaics` takes a manifest of tiles with masks and labels (one row per tile, as
``../shared/data/real/histo/ebhi/manifest.csv``) and writes slides built from the tiles of ONE split
at a time, so no source patient reaches two splits:

- a ``rows × cols`` grid of tiles inside a margin of blank glass (so tissue detection sees a
  slide, not a wall of tissue); every tile is placed with a random rotation by a multiple of 90°
  and a random flip, its mask with it;
- background: benign tiles (label 0), drawn without replacement within a slide while the pool lasts;
- positive slides (label 1): one spatially contiguous (4-connected) cluster of malignant tiles
  (label 1) of `cluster` = (min, max) tiles, grown from a random cell;
- optional look-alikes: in every slide, positive or negative, `lookalikes` = (min, max) isolated
  benign tiles of `lookalike_classes` (default: Low-grade intraepithelial neoplasia, the benign class
  that looks most like the malignant ones), no two of them and no lesion tile 8-adjacent; they are
  then left out of the background pool, so they appear only as isolated tiles;
- files per slide: ``slides/<id>.tif`` (pyramidal tiled TIFF, JPEG; mpp `mpp`, *nominal*: EBHI
  stores no microns per pixel, 0.5 µm/px is the usual 40×-scanner value), ``masks/<id>_mask_ds<d>.png``
  (the malignant tiles' masks pasted, at downsample `mask_downsample`, 0/255), ``layouts/<id>.csv``
  (one row per placed tile: grid row/col, level-0 x/y, source case, patient, label, class, role,
  rotation, flip);
- ``manifest.csv``: case_id = patient_id = slide id, site (the tiles' site), modality ``WSI``,
  image, mask, label, split, meta_mask_downsample, meta_mpp, meta_mpp_nominal, meta_layout,
  meta_grid, meta_margin_tiles, meta_tile_px, meta_lesion_tiles, meta_lookalike_tiles,
  meta_source_patients.

Each slide's layout is a function of (seed, split, slide index) alone, so a re-run rebuilds the
same slides and skips those whose files exist. A source tile that cannot be read is recorded in
``failures.csv`` and left out of the pools; a slide that cannot be written is recorded and left out
of the manifest.

Example:
    >>> from medwss.data.mosaic import build_mosaics
    >>> build_mosaics("ebhi/manifest.csv", "mosaics", {"train": 40, "val": 16, "test": 30})  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medwss.data.manifest import Case, load_manifest, write_manifest
from medwss.errors import ConfigError, InvalidDataError, require_file
from medwss.io.atomic import write_text
from medwss.jobs import FailureLog

log = logging.getLogger(__name__)

NOMINAL_MPP = 0.5
"""Microns per level-0 pixel written into mosaic slides: nominal (EBHI tiles carry none)."""
GLASS_RGB = (243, 241, 245)
"""Colour of the blank margin around the tiles."""
LOOKALIKE_CLASSES = ("Low-grade IN",)
"""EBHI's benign class closest in appearance to the malignant ones (``meta_class`` values)."""
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Placement:
    """One tile placed on a mosaic's grid (row/col inside the margin; x/y level-0 top-left)."""

    row: int
    col: int
    x: int
    y: int
    case_id: str
    patient_id: str
    label: int
    cls: str
    role: str  # background | lesion | lookalike
    rot90: int
    flip: bool


@dataclass
class _Tile:
    case: Case
    image: np.ndarray  # (T, T, 3) uint8
    mask: np.ndarray  # (T, T) bool

    @property
    def cls(self) -> str:
        return self.case.meta.get("class", "")


def cluster_cells(rng: np.random.Generator, grid: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """A random 4-connected set of `size` cells of a ``rows × cols`` grid, grown from a random cell.

    Each step adds a cell drawn uniformly from the cells 4-adjacent to the cluster, so the shape
    varies from compact to elongated.
    """
    rows, cols = grid
    if not 1 <= size <= rows * cols:
        raise ConfigError(f"cluster size {size} does not fit a {rows}×{cols} grid")
    start = (int(rng.integers(rows)), int(rng.integers(cols)))
    cells, chosen = [start], {start}
    while len(cells) < size:
        frontier = sorted(
            {
                (r + dr, c + dc)
                for r, c in cells
                for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                if 0 <= r + dr < rows and 0 <= c + dc < cols and (r + dr, c + dc) not in chosen
            }
        )
        nxt = frontier[int(rng.integers(len(frontier)))]
        cells.append(nxt)
        chosen.add(nxt)
    return cells


def _isolated_cells(
    rng: np.random.Generator, grid: tuple[int, int], taken: set[tuple[int, int]], n: int
) -> list[tuple[int, int]]:
    """Up to `n` random cells none of which is 8-adjacent to a taken cell or to another chosen one."""
    rows, cols = grid
    blocked = set(taken)
    out: list[tuple[int, int]] = []
    for flat in rng.permutation(rows * cols):
        r, c = divmod(int(flat), cols)
        if any((r + dr, c + dc) in blocked for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
            continue
        out.append((r, c))
        blocked.add((r, c))
        if len(out) == n:
            break
    return out


def _draw(rng: np.random.Generator, pool: list[_Tile], n: int) -> list[_Tile]:
    """`n` tiles of `pool`, without replacement while the pool lasts."""
    if n == 0:
        return []
    idx = rng.permutation(len(pool)) if n <= len(pool) else rng.integers(len(pool), size=n)
    return [pool[int(i)] for i in idx[:n]]


def _split_code(split: str) -> int:
    return _SPLIT_CODES.get(split, zlib.crc32(split.encode()) % 10_000 + 3)


def _load_tile(case: Case) -> _Tile:
    from PIL import Image

    if case.mask is None:
        raise InvalidDataError("tile has no mask", case.image)
    try:
        with Image.open(case.image) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(case.mask) as im:
            mask = np.asarray(im.convert("L")) > 0
    except OSError as exc:
        raise InvalidDataError(f"cannot read the tile or its mask ({exc})", case.image) from exc
    if image.shape[0] != image.shape[1] or mask.shape != image.shape[:2]:
        raise InvalidDataError(f"tile {image.shape[:2]} and mask {mask.shape} must be one square size", case.image)
    return _Tile(case, image, mask)


def _check_args(
    grid: tuple[int, int], positive_fraction: float, cluster: tuple[int, int], lookalikes: tuple[int, int], margin: int
) -> None:
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise ConfigError(f"grid must be at least 1×1, got {grid}")
    if not 0 <= positive_fraction <= 1:
        raise ConfigError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if not 1 <= cluster[0] <= cluster[1] <= rows * cols:
        raise ConfigError(f"cluster must be (min, max) with 1 <= min <= max <= {rows * cols}, got {cluster}")
    if not 0 <= lookalikes[0] <= lookalikes[1]:
        raise ConfigError(f"lookalikes must be (min, max) with 0 <= min <= max, got {lookalikes}")
    if margin < 0:
        raise ConfigError(f"margin must be non-negative, got {margin}")


def plan_mosaic(
    rng: np.random.Generator,
    label: int,
    grid: tuple[int, int],
    cluster: tuple[int, int],
    lookalikes: tuple[int, int],
    pools: Mapping[str, list[_Tile]],
    tile_px: int,
    margin: int,
) -> tuple[list[Placement], dict[tuple[int, int], _Tile]]:
    """The placements of one slide (and the tile behind each cell)."""
    rows, cols = grid
    roles: dict[tuple[int, int], str] = {}
    if label == 1:
        size = int(rng.integers(cluster[0], cluster[1] + 1))
        roles.update({cell: "lesion" for cell in cluster_cells(rng, grid, size)})
    n_look = int(rng.integers(lookalikes[0], lookalikes[1] + 1))
    if n_look:
        roles.update({cell: "lookalike" for cell in _isolated_cells(rng, grid, set(roles), n_look)})
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    for cell in cells:
        roles.setdefault(cell, "background")
    tiles: dict[tuple[int, int], _Tile] = {}
    for role in ("lesion", "lookalike", "background"):
        mine = [cell for cell in cells if roles[cell] == role]
        tiles.update(zip(mine, _draw(rng, pools[role], len(mine)), strict=True))
    placements = []
    for r, c in cells:
        t = tiles[(r, c)]
        placements.append(
            Placement(
                row=r, col=c, x=(c + margin) * tile_px, y=(r + margin) * tile_px, case_id=t.case.case_id,
                patient_id=t.case.patient_id, label=int(t.case.label or 0), cls=t.cls, role=roles[(r, c)],
                rot90=int(rng.integers(4)), flip=bool(rng.integers(2)),
            )
        )  # fmt: skip
    return placements, tiles


def _orient(a: np.ndarray, p: Placement) -> np.ndarray:
    a = np.rot90(a, p.rot90)
    return np.ascontiguousarray(a[:, ::-1] if p.flip else a)


def render_mosaic(
    placements: Sequence[Placement],
    tiles: Mapping[tuple[int, int], _Tile],
    grid: tuple[int, int],
    tile_px: int,
    margin: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The slide's level-0 RGB and its lesion mask (only the lesion tiles' masks are pasted)."""
    rows, cols = grid
    h, w = (rows + 2 * margin) * tile_px, (cols + 2 * margin) * tile_px
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = GLASS_RGB
    mask = np.zeros((h, w), bool)
    for p in placements:
        t = tiles[(p.row, p.col)]
        rgb[p.y : p.y + tile_px, p.x : p.x + tile_px] = _orient(t.image, p)
        if p.role == "lesion":
            mask[p.y : p.y + tile_px, p.x : p.x + tile_px] = _orient(t.mask, p)
    return rgb, mask


def downsample_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Block majority (covered fraction ≥ 0.5) of a bool mask whose sides are multiples of `factor`."""
    h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask {mask.shape} is not a multiple of {factor}")
    return mask.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)) >= 0.5


def _layout_csv(placements: Sequence[Placement]) -> str:
    buf = io.StringIO()
    fields = list(asdict(placements[0]))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for p in placements:
        writer.writerow({k: int(v) if isinstance(v, bool) else v for k, v in asdict(p).items()})
    return buf.getvalue()


def read_layout(path: str | Path, root: str | Path | None = None) -> list[Placement]:
    """The placements of a mosaic from its ``layouts/<id>.csv`` (a relative path is taken from `root`).

    With a manifest's case: ``read_layout(case.meta["layout"], manifest.path.parent)``.
    """
    path = Path(path)
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    with open(require_file(path), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ints = ("row", "col", "x", "y", "label", "rot90")
    return [
        Placement(**{**r, **{k: int(r[k]) for k in ints}, "flip": r["flip"] == "1"})  # type: ignore[arg-type]
        for r in rows
    ]


def _pools(
    cases: list[Case], lookalike_classes: Sequence[str], use_lookalikes: bool, failures: FailureLog
) -> dict[str, list[_Tile]]:
    pools: dict[str, list[_Tile]] = {"lesion": [], "lookalike": [], "background": []}
    for case in cases:
        try:
            tile = _load_tile(case)
        except InvalidDataError as exc:  # one bad tile is recorded and left out, never the whole job
            failures.record(case.case_id, case.image, exc)
            log.warning("skipping tile %s: %s", case.case_id, exc)
            continue
        if int(case.label or 0) == 1:
            pools["lesion"].append(tile)
        elif use_lookalikes and tile.cls in lookalike_classes:
            pools["lookalike"].append(tile)
        else:
            pools["background"].append(tile)
    return pools


def build_mosaics(
    manifest: str | Path,
    out: str | Path,
    n_slides: int | Mapping[str, int],
    grid: tuple[int, int] = (8, 8),
    positive_fraction: float = 0.5,
    cluster: tuple[int, int] = (4, 12),
    seed: int = 0,
    split: str = "train",
    lookalikes: tuple[int, int] = (0, 0),
    lookalike_classes: Sequence[str] = LOOKALIKE_CLASSES,
    margin: int = 1,
    mpp: float = NOMINAL_MPP,
    mask_downsample: int = 8,
    quality: int = 90,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write mosaic slides built from the tiles of one split each, and ``out/manifest.csv``.

    Args:
        manifest: Manifest of tiles: one row per tile with ``image``, ``mask``, ``label`` (1 =
            malignant), ``split``; ``meta_class`` names the class (for `lookalike_classes`).
        out: Output folder (slides/, masks/, layouts/, manifest.csv, failures.csv).
        n_slides: Slides of `split`, or ``{split: slides}`` for several splits in one manifest.
        grid: (rows, cols) of tiles.
        positive_fraction: Fraction of the slides of each split with a lesion cluster (rounded).
        cluster: (min, max) tiles of the lesion cluster, drawn uniformly.
        seed: Run seed; each slide depends on (seed, split, index) only.
        split: The split whose tiles build the slides, when `n_slides` is a number.
        lookalikes: (min, max) isolated look-alike tiles per slide (every slide).
        lookalike_classes: ``meta_class`` values of the benign tiles used as look-alikes.
        margin: Tiles of blank glass around the grid.
        mpp: Microns per level-0 pixel written into the TIFF (nominal for EBHI).
        mask_downsample: Level-0 pixels per mask pixel (divides the tile size).
        quality: JPEG quality of the slide.
        overwrite: Rewrite slides whose files exist (else they are kept).
        progress: Show a progress bar.

    Returns:
        The path of the output manifest.

    Raises:
        ConfigError: Invalid sizes or fractions.
        InvalidDataError: A split has no tiles, too few malignant or look-alike tiles, or tiles of
            different sizes (one line naming the manifest).
    """
    from medwss.data.phantoms.common import save_png, track
    from medwss.io.tiff_writer import write_pyramid_tiff

    grid = (int(grid[0]), int(grid[1]))
    cluster = (int(cluster[0]), int(cluster[1]))
    lookalikes = (int(lookalikes[0]), int(lookalikes[1]))
    _check_args(grid, positive_fraction, cluster, lookalikes, margin)
    counts = dict(n_slides) if isinstance(n_slides, Mapping) else {split: int(n_slides)}
    if any(n < 0 for n in counts.values()) or sum(counts.values()) < 1:
        raise ConfigError(f"need at least one slide, got {counts}")
    source = load_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failures = FailureLog(out / "failures.csv")
    rows: list[dict[str, object]] = []
    for name, n in counts.items():
        if n == 0:
            continue
        cases = [c for c in source.cases if c.split == name and c.label is not None]
        if not cases:
            raise InvalidDataError(f"no labelled tiles in split '{name}'", source.path)
        pools = _pools(cases, lookalike_classes, lookalikes[1] > 0, failures)
        sizes = {t.image.shape[0] for pool in pools.values() for t in pool}
        if len(sizes) != 1:
            raise InvalidDataError(f"split '{name}': tiles must share one size, found {sorted(sizes)}", source.path)
        tile_px = sizes.pop()
        if tile_px % mask_downsample:
            raise ConfigError(f"mask_downsample {mask_downsample} does not divide the tile size {tile_px}")
        n_pos = int(round(n * positive_fraction))
        need = {"lesion": n_pos > 0, "lookalike": lookalikes[1] > 0, "background": True}
        for role, needed in need.items():
            if needed and not pools[role]:
                raise InvalidDataError(f"split '{name}' has no {role} tiles", source.path)
        code = _split_code(name)
        labels = np.random.default_rng([seed, code]).permutation([1] * n_pos + [0] * (n - n_pos))
        for i in track(range(n), total=n, desc=f"mosaics {name}", enabled=progress):
            sid = f"mosaic_{name}_{i:03d}"
            label = int(labels[i])
            rng = np.random.default_rng([seed, code, i])
            placements, tiles = plan_mosaic(rng, label, grid, cluster, lookalikes, pools, tile_px, margin)
            image = out / "slides" / f"{sid}.tif"
            mask_path = out / "masks" / f"{sid}_mask_ds{mask_downsample}.png"
            layout = out / "layouts" / f"{sid}.csv"
            try:
                if overwrite or not (image.exists() and mask_path.exists() and layout.exists()):
                    rgb, mask = render_mosaic(placements, tiles, grid, tile_px, margin)
                    desc = f"medwss mosaic of {source.path.name if source.path else 'tiles'} seed={seed} {sid}; mpp {mpp} nominal"
                    write_pyramid_tiff(rgb, image, mpp=mpp, quality=quality, description=desc)
                    small = downsample_mask(mask, mask_downsample).astype(np.uint8) * 255
                    save_png(small, mask_path)
                    write_text(layout, _layout_csv(placements))
                failures.clear(sid)
            except Exception as exc:  # one slide failing is recorded and skipped
                failures.record(sid, image, exc)
                for p in (image, mask_path, layout):  # never a slide with half its files
                    p.unlink(missing_ok=True)
                continue
            roles = [p.role for p in placements]
            rows.append({
                "case_id": sid, "patient_id": sid, "site": cases[0].site, "modality": "WSI", "image": image,
                "label": label, "mask": mask_path, "split": name, "meta_mask_downsample": mask_downsample,
                "meta_mpp": mpp, "meta_mpp_nominal": 1, "meta_layout": layout, "meta_grid": f"{grid[0]}x{grid[1]}",
                "meta_margin_tiles": margin, "meta_tile_px": tile_px, "meta_lesion_tiles": roles.count("lesion"),
                "meta_lookalike_tiles": roles.count("lookalike"),
                "meta_source_patients": len({p.patient_id for p in placements}),
            })  # fmt: skip
    return write_manifest(rows, out / "manifest.csv")
