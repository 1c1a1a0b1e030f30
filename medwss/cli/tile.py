"""`medwss tile MANIFEST --out DIR`: tissue detection and tiling of every case of a manifest.

Writes ``DIR/<case_id>.tiles.h5`` per case, QA images ``DIR/qa/<case_id>_tissue.png`` and
``DIR/qa/<case_id>_tiles.png``, ``DIR/failures.csv`` (cases that failed, one line each) and
``DIR/run.json``. Cases whose tile file exists are skipped (``--overwrite`` redoes them). Slides
(modality WSI) are tiled at a target mpp inside tissue; volumes by axial slice, 2.5D stack or 3D
patch inside the body, on their canonical RAS+ grid whatever the stored axis order (tile
coordinates are canonical voxels; the tile file records the source orientation), multi-channel
cases on the first channel's grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from medwss.config import StrictConfig
from medwss.data.manifest import Case
from medwss.embed.tiles import TileSet
from medwss.embed.tissue import TissueConfig

SLIDE_TILE_SIZE = 224
VOLUME_TILE_SIZE = 32


class TileConfig(StrictConfig):
    """What `medwss tile` does (configs/tile.yaml)."""

    tile_size: int | None = Field(default=None, ge=1)
    """Tile side: pixels at `mpp` for slides (None: 224), voxels in-plane for volumes (None: 32)."""
    mpp: float = Field(default=0.5, gt=0)
    """Slides: target microns per pixel."""
    mag: float | None = Field(default=None, gt=0)
    """Slides: target magnification instead of `mpp` (20 → the slide's level-0 mpp × objective power / 20)."""
    overlap: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of a tile shared with its neighbour (volumes: in-plane, and along k for 3D patches)."""
    min_tissue: float = Field(default=0.25, ge=0, le=1)
    """Keep tiles with at least this fraction of tissue (slides) or body (volumes)."""
    mpp_override: float | None = Field(default=None, gt=0)
    """Slides: level-0 microns per pixel for files without it (or with a wrong value)."""
    tissue: TissueConfig = Field(default_factory=TissueConfig)
    """Slides: tissue detection settings."""
    mode: Literal["axial2d", "stack25d", "patch3d"] = "axial2d"
    """Volumes: axial slices, 2.5D stacks of `depth` slices, or 3D patches."""
    depth: int = Field(default=3, ge=1)
    """Volumes: slices per 2.5D stack."""
    tile_mm: float | None = Field(default=None, gt=0)
    """Volumes: patch side in mm instead of `tile_size` voxels."""
    roi_labels: list[int] | None = None
    """Volumes: keep only tiles inside the bounding box of these labels of the case's `mask` (organ ROI)."""
    roi_margin_mm: float = Field(default=10.0, ge=0)
    """Volumes: margin around the organ ROI, mm."""
    qa: bool = True
    """Write the QA images."""
    nan: Literal["raise", "fill"] = "raise"
    """Volumes with NaN or infinite voxels: fail the case (default) or fill them with the minimum."""
    force_mpp: bool = False
    """Slides: accept a slide or target mpp outside 0.05–100 µm/px, or more than 8x upsampling."""
    channels: list[str] | None = None
    """Multiplex slides (QPTIFF, OME CYX): 1–3 channels (names or indices) read as the tile's RGB planes; None: the first 3."""
    stain_norm: Literal["none", "macenko"] = "none"
    """Slides: stain normalisation of every tile when it is read (recorded in the tile file; `medwss.transforms.stain_norm`)."""
    tissue_geojson: str | None = None
    """Slides: tissue from GeoJSON instead of detection: a file, or a folder of ``<case_id>_tissue.geojson``."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tile", help="detect tissue and tile every case of a manifest", description=__doc__)
    p.add_argument("manifest", help="manifest CSV")
    p.add_argument("--out", required=True, help="output folder (tiles, qa/, failures.csv, run.json)")
    p.add_argument("--config", help="YAML config (configs/tile.yaml); flags given here override it")
    p.add_argument("--tile-size", type=int, help="tile side: pixels at --mpp (slides, 224) or voxels (volumes, 32)")
    p.add_argument("--mpp", type=float, help="slides: target microns per pixel (default 0.5)")
    p.add_argument(
        "--mag", type=float, help="slides: target magnification instead of --mpp (e.g. 20; from objective power/mpp)"
    )
    p.add_argument("--overlap", type=float, help="fraction of a tile shared with its neighbour (default 0)")
    p.add_argument("--min-tissue", type=float, help="keep tiles with at least this tissue fraction (default 0.25)")
    p.add_argument("--mode", choices=("axial2d", "stack25d", "patch3d"), help="volumes: tiling mode (default axial2d)")
    p.add_argument("--depth", type=int, help="volumes: slices per 2.5D stack (default 3)")
    p.add_argument("--tile-mm", type=float, help="volumes: patch side in mm instead of --tile-size voxels")
    p.add_argument("--mpp-override", type=float, help="slides: level-0 microns per pixel for files without it")
    p.add_argument("--roi-labels", type=lambda v: [int(x) for x in v.split(",")], help="volumes: organ ROI, e.g. 2,3")
    p.add_argument("--roi-margin-mm", type=float, help="volumes: margin around the organ ROI (default 10 mm)")
    p.add_argument(
        "--nan", choices=("raise", "fill"), help="volumes with NaN/inf voxels: fail the case (default) or fill"
    )
    p.add_argument("--force-mpp", action="store_true", default=None, help="slides: accept an implausible mpp")
    p.add_argument("--channel", dest="channels", action="append", metavar="NAME|INDEX",
                   help="multiplex slides: a channel to read (repeat for up to 3; default the first 3)")  # fmt: skip
    p.add_argument("--stain-norm", choices=("none", "macenko"), help="slides: stain normalisation of tiles")
    p.add_argument("--tissue-geojson", metavar="FILE|DIR",
                   help="slides: tissue polygons (e.g. qa/<case>_tissue.geojson edited in QuPath) instead of detection")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo cases whose tile file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


_FLAGS = (
    "tile_size", "mpp", "mag", "overlap", "min_tissue", "mode", "depth", "tile_mm", "mpp_override", "roi_labels", "roi_margin_mm",
    "nan", "force_mpp", "channels", "stain_norm", "tissue_geojson",
)  # fmt: skip


def _file_identity(path: Path) -> list:
    """What identifies an input file cheaply: its absolute path, size and modification time."""
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def tile_signature(case: Case, cfg: TileConfig) -> str:
    """A digest of what produces a case's tile file: the tiling config and the identity of its input files."""
    import hashlib
    import json

    inputs = {name: _file_identity(Path(p)) for name, p in sorted(case.images.items())}
    if cfg.roi_labels and case.mask is not None:
        inputs["mask"] = _file_identity(Path(case.mask))
    if cfg.tissue_geojson and case.modality == "WSI":
        inputs["tissue_geojson"] = _file_identity(tissue_geojson_path(cfg.tissue_geojson, case.case_id))
    blob = json.dumps(
        {"config": cfg.model_dump(mode="json"), "inputs": inputs, "modality": case.modality}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def stored_signature(path: Path) -> str | None:
    """The signature recorded in a tile file (None: no file, unreadable, or written before signatures)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("extra_signature")
    except OSError:
        return None
    return value.decode() if isinstance(value, bytes) else (str(value) if value is not None else None)


def resolve(args: argparse.Namespace) -> TileConfig:
    """The config file's values, overridden by the flags given on the command line."""
    from medwss.config import merge_config

    return merge_config(TileConfig, getattr(args, "config", None), {k: getattr(args, k, None) for k in _FLAGS})


def roi_mask(case: Case, volume, labels: list[int], margin_mm: float):  # noqa: ANN001, ANN201
    """Boolean mask of the organ ROI: the box around `labels` in the case's label map, grown by the margin."""
    import numpy as np

    from medwss.embed.tissue import crop_box
    from medwss.errors import InvalidDataError
    from medwss.io.resample import resample_to
    from medwss.io.volumes import load_volume

    if case.mask is None:
        raise InvalidDataError("--roi-labels needs a label map in the manifest's mask column", case.image)
    labels_vol = resample_to(load_volume(case.mask), volume, order=0)
    box = crop_box(labels_vol.array, labels, volume.spacing, margin_mm)
    roi = np.zeros(volume.shape[:3], bool)
    roi[box] = True
    return roi


def tissue_geojson_path(where: str | Path, case_id: str) -> Path:
    """The tissue GeoJSON of a case: `where` itself, or ``<case_id>_tissue.geojson`` (else ``<case_id>.geojson``) in it."""
    where = Path(where)
    if not where.is_dir():
        return where
    named = where / f"{case_id}_tissue.geojson"
    return named if named.exists() or not (where / f"{case_id}.geojson").exists() else where / f"{case_id}.geojson"


def magnification_mpp(slide, mag: float) -> float:  # noqa: ANN001
    """Target µm/px for magnification `mag` on `slide`; sets the slide's level-0 mpp when only its objective power is known.

    With the objective power P and level-0 mpp m: ``m × P / mag``. With m only: ``10 / mag``
    (the usual convention, 20x ≈ 0.5 µm/px, 40x ≈ 0.25). With P only: level-0 mpp taken as ``10 / P``
    (recorded in the tile file as ``assumed_slide_mpp``, which ``medwss embed`` reads the slide with).

    Raises:
        MissingMetadataError: The slide has neither (pass ``--mpp-override`` or use ``--mpp``).
    """
    from medwss.errors import MissingMetadataError

    power = slide.objective_power
    if slide.has_mpp:
        return float(slide.mpp) * (float(power) if power else 10.0 / float(slide.mpp)) / mag
    if power:
        slide.mpp_override = 10.0 / float(power)
        return 10.0 / mag
    raise MissingMetadataError(
        f"--mag {mag:g} needs the slide's objective power or microns per pixel and the slide has neither; "
        "pass --mpp-override (level-0 µm/px) or tile with --mpp",
        slide.path,
    )


def tile_case(case: Case, cfg: TileConfig, out: Path) -> TileSet:
    """Tile one case, write its QA images and then its tile file (last, so it marks the case done).

    Raises:
        InvalidDataError: No tile has enough tissue. Any reading error of the image.
    """
    from medwss.embed.tiles import save_tiles
    from medwss.embed.tiling import slide_grid, tile_slide, tile_volume, tiles_png
    from medwss.embed.tissue import body_mask, detect_tissue, save_body_png, save_tissue_png
    from medwss.errors import InvalidDataError, MissingMetadataError
    from medwss.io.slide import open_slide
    from medwss.io.volumes import load_volume

    qa = out / "qa"
    what = "tissue"
    if case.modality == "WSI":
        with open_slide(case.image, mpp=cfg.mpp_override, channels=cfg.channels) as slide:
            assumed = not slide.has_mpp
            mpp = cfg.mpp if cfg.mag is None else magnification_mpp(slide, cfg.mag)  # --mag: from objective power
            if not slide.has_mpp:
                raise MissingMetadataError("slide has no microns-per-pixel metadata; pass --mpp-override", case.image)
            size = cfg.tile_size or SLIDE_TILE_SIZE
            slide_grid(slide, size, mpp, cfg.overlap, cfg.force_mpp)  # limits, before tissue detection
            tissue = detect_tissue(slide, cfg.tissue)
            if cfg.tissue_geojson:
                from medwss.embed.tissue import tissue_from_geojson

                tissue = tissue_from_geojson(tissue_geojson_path(cfg.tissue_geojson, case.case_id), tissue)
                what = "tissue inside the tissue GeoJSON"
            tiles = tile_slide(
                slide, case.case_id, size, mpp, cfg.overlap, cfg.min_tissue, tissue, cfg.tissue, cfg.force_mpp
            )
            if cfg.mag is not None:
                tiles.attrs["target_magnification"] = float(cfg.mag)
            if slide.objective_power:
                tiles.attrs["level0_magnification"] = float(slide.objective_power)
            if assumed:  # level-0 mpp taken from the objective power (--mag): embed reads the slide with it
                tiles.attrs["assumed_slide_mpp"] = float(slide.mpp)
        if cfg.qa:
            from medwss.embed.tissue import save_tissue_geojson

            save_tissue_png(tissue, qa / f"{case.case_id}_tissue.png")
            save_tissue_geojson(tissue, qa / f"{case.case_id}_tissue.geojson")  # for QuPath, see --tissue-geojson
            tiles_png(tissue, tiles, qa / f"{case.case_id}_tiles.png")
        if slide.channels is not None and slide.channel_names is not None:
            tiles.attrs["slide_channels"] = ",".join(slide.channel_names[c] for c in slide.channels)
        if cfg.stain_norm != "none":
            tiles.attrs["stain_norm"] = cfg.stain_norm
    else:
        what = "body"
        volume = load_volume(case.image, nan=cfg.nan)
        if volume.array.ndim != 3 and not (volume.array.ndim == 4 and volume.array.shape[3] == 1):
            raise InvalidDataError(
                f"image has shape {volume.shape}; tiling needs a 3D volume (one file per channel in the manifest)",
                case.image,
            )
        fg = body_mask(volume, case.modality)  # on the stored grid; tile_volume moves it to the canonical one
        if cfg.roi_labels:
            fg = fg & roi_mask(case, volume, cfg.roi_labels, cfg.roi_margin_mm)
            what = f"body inside the ROI of labels {cfg.roi_labels}"
        tiles = tile_volume(
            volume, case.case_id, cfg.mode, cfg.tile_size or VOLUME_TILE_SIZE, depth=cfg.depth,
            min_foreground=cfg.min_tissue, foreground=fg, modality=case.modality, tile_mm=cfg.tile_mm,
            overlap=cfg.overlap,
        )  # fmt: skip
        tiles.source = str(case.image)
        if len(case.images) > 1:
            tiles.attrs["channels"] = ",".join(case.images)
        if cfg.qa:
            save_body_png(volume, fg, qa / f"{case.case_id}_tissue.png", case.modality)
            tiles_png(volume, tiles, qa / f"{case.case_id}_tiles.png")
    if len(tiles) == 0:
        raise InvalidDataError(
            f"no tile has {cfg.min_tissue:.0%} {what} (see qa/{case.case_id}_tissue.png)", case.image
        )
    tiles.attrs["modality"] = case.modality
    tiles.attrs["signature"] = tile_signature(case, cfg)
    save_tiles(tiles, out / f"{case.case_id}.tiles.h5")
    return tiles


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from medwss.data.manifest import load_manifest
    from medwss.embed.failures import FailureLog, one_line
    from medwss.io.atomic import remove_stale_temps
    from medwss.runinfo import write_run_record

    if getattr(args, "mag", None) is not None and getattr(args, "mpp", None) is not None:
        from medwss.errors import ConfigError

        raise ConfigError("give --mag or --mpp, not both")
    cfg = resolve(args)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # left by a run killed mid-write
    failures_path = out / "failures.csv"
    failures = FailureLog(failures_path)
    done = skipped = redone = n_tiles = 0
    failed: list[str] = []
    start = time.perf_counter()
    for case in tqdm(manifest.cases, desc="tile", unit="case", disable=getattr(args, "quiet", False)):
        target = out / f"{case.case_id}.tiles.h5"
        if target.exists() and not getattr(args, "overwrite", False):
            if stored_signature(target) == tile_signature(case, cfg):
                skipped += 1
                failures.clear(case.case_id)
                continue
            redone += 1
            tqdm.write(
                f"medwss tile: {case.case_id}: {target.name} was made with other settings or inputs; tiling again",
                file=sys.stderr,
            )
        try:
            n_tiles += len(tile_case(case, cfg, out))
        except Exception as exc:  # one bad case is recorded and skipped, never the whole job
            failed.append(case.case_id)
            failures.record(case.case_id, case.image, exc)
            tqdm.write(f"medwss tile: {case.case_id} failed: {one_line(exc)}", file=sys.stderr)
            continue
        done += 1
        failures.clear(case.case_id)
    seconds = time.perf_counter() - start
    metrics = {
        "done": done, "skipped": skipped, "redone_stale": redone, "failed": len(failed), "tiles": n_tiles,
        "seconds": round(seconds, 3),
    }  # fmt: skip
    config = {"manifest": str(Path(args.manifest).resolve()), **cfg.model_dump()}
    write_run_record(out, "tile", config, metrics=metrics)
    note = f" (see {failures_path})" if failed else ""
    stale = f" ({redone} redone: made with other settings or inputs)" if redone else ""
    print(f"tile: {done} done{stale}, {skipped} skipped, {len(failed)} failed{note}; {n_tiles} tiles in {out}")
    from medwss.cli.batch import finish

    return finish("tile", len(manifest.cases), len(failed), failures_path)
