"""`tile_manifest`: tissue detection and tiling of every case of a manifest, resumable, in parallel, sharded.

The library side of `medwss tile` (the command only parses flags, calls `tile_manifest` and turns
its counts into the exit code). Per case it writes ``OUT/<case_id>.tiles.h5`` (last, atomically,
so its presence marks the case done) and the QA images ``OUT/qa/<case_id>_tissue.png``,
``_tiles.png`` and ``_tissue.geojson``; per job ``OUT/failures.csv`` (one row per failed case) and
``OUT/run.json``. Slides (modality WSI) are tiled at a target mpp (or `--mag`) inside tissue;
volumes by axial slice, 2.5D stack or 3D patch inside the body, on their canonical RAS+ grid
whatever the stored axis order (tile coordinates are canonical voxels; the tile file records the
source orientation), multi-channel cases on the first channel's grid.

Resume: a case whose tile file records the signature of the same config and inputs
(`tile_signature`: the config, each input file's path, size and mtime) is skipped; any other is
tiled again and the reason printed. ``overwrite`` redoes the cases whose tile file predates this
run (so processes sharing the folder do not redo each other's work).

Scale out (see `medwss.embed.sharing`): ``workers=N`` tiles N cases at once in spawned
processes (the parent claims cases, gathers the results and keeps the failure log; outputs are the
same bytes as with one worker); ``shard=(i, n)`` (``--shard i/n`` or a SLURM job array) takes the
i-th of n round-robin shares of the sorted case ids; and any number of processes on one output
folder share the cases through per-case claim files, each case tiled once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from medwss.data.manifest import Case, Manifest
from medwss.embed.config import TileConfig
from medwss.embed.tiles import TileSet

SLIDE_TILE_SIZE = 224
VOLUME_TILE_SIZE = 32


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


def tiles_target(out: Path, case_id: str) -> Path:
    return Path(out) / f"{case_id}.tiles.h5"


def _init_worker() -> None:
    """Worker processes: one thread each for the numeric libraries (the processes are the parallelism)."""
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _tile_one(case: Case, cfg: TileConfig, out: Path) -> dict[str, Any]:
    """Tile one case (in a worker process or inline); the outcome as plain data, picklable whatever failed."""
    from medwss.jobs import CASE_ERRORS, describe

    try:
        n = len(tile_case(case, cfg, Path(out)))
    except CASE_ERRORS as exc:  # one bad case is recorded and skipped, never the whole job
        cls, message = describe(exc)
        return {"case_id": case.case_id, "ok": False, "tiles": 0, "error_class": cls, "error": message}
    return {"case_id": case.case_id, "ok": True, "tiles": n, "error_class": "", "error": ""}


def _is_finished(case: Case, cfg: TileConfig, target: Path, overwrite: bool, started: float) -> bool | None:
    """True: the tile file is current (skip). None: no tile file (or --overwrite and it predates the run). False: stale."""
    if not target.exists():
        return None
    if overwrite:
        try:
            fresh = target.stat().st_mtime >= started  # written by a process sharing this run
        except OSError:
            return None
        if not fresh:
            return None
    return stored_signature(target) == tile_signature(case, cfg)


def tile_manifest(
    manifest: Manifest,
    out: str | Path,
    cfg: TileConfig | None = None,
    progress: bool = True,
    workers: int = 1,
    shard: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    claim_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Tile every case of `manifest` (of this shard) into `out`; see the module docstring.

    Args:
        manifest: The cases (a missing image fails its case only).
        out: The output folder (created).
        cfg: Tiling settings (default `TileConfig()`).
        progress: Show a progress bar.
        workers: Cases tiled at once, each in its own (spawned) process; 1 tiles in this process.
        shard: ``"i/n"`` or ``(i, n)``: only the i-th of n shares of the cases
            (`medwss.embed.sharing.shard_cases`); None: every case (`medwss tile` passes the SLURM
            job array's share when run in one, `medwss.embed.sharing.shard_from_env`).
        overwrite: Redo cases whose tile file was written before this run.
        claim_timeout_s: Seconds after which another process's claim that was not refreshed is
            stale (default `medwss.embed.sharing.CLAIM_TIMEOUT_S`).

    Returns:
        Counts: ``total`` (cases of this shard), ``done``, ``skipped`` (already tiled),
        ``redone_stale``, ``failed``, ``busy`` (left to another process holding their claim),
        ``tiles``, ``seconds``, ``workers``, ``shard`` (``"i/n"`` or None), ``failed_cases`` and
        ``failures`` (the path of the failure log).

    Raises:
        ConfigError: A bad `shard` or `workers`.
    """
    from tqdm.auto import tqdm

    from medwss.embed.sharing import CLAIM_TIMEOUT_S, CaseClaims, SharedFailureLog, resolve_shard, shard_cases
    from medwss.errors import ConfigError
    from medwss.io.atomic import clean_stale_temps
    from medwss.jobs import Job
    from medwss.runinfo import write_run_record

    cfg = cfg or TileConfig()
    if int(workers) < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    workers = int(workers)
    where = resolve_shard(shard)
    cases = shard_cases(manifest.cases, where)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    clean_stale_temps(out, started)  # left by a run killed mid-write (files of live writers are kept)
    job = Job(SharedFailureLog(out / "failures.csv"), command="tile", quiet=False)
    claims = CaseClaims(out, CLAIM_TIMEOUT_S if claim_timeout_s is None else claim_timeout_s)
    stats: dict[str, Any] = {"total": len(cases), "done": 0, "skipped": 0, "redone_stale": 0, "failed": 0,
                             "busy": 0, "tiles": 0}  # fmt: skip
    bar = tqdm(total=len(cases), desc="tile", unit="case", disable=not progress)

    def candidates():  # noqa: ANN202 - the cases this process tiles, each claimed
        for case in cases:
            target = tiles_target(out, case.case_id)
            state = _is_finished(case, cfg, target, overwrite, started)
            if state:
                job.skip(case.case_id)
                bar.update()
                continue
            if not claims.claim(target.name):
                stats["busy"] += 1  # another process is on it
                bar.update()
                continue
            again = _is_finished(case, cfg, target, overwrite, started)  # it may have finished meanwhile
            if again:
                claims.release(target.name)
                job.skip(case.case_id)
                bar.update()
                continue
            if again is False:
                stats["redone_stale"] += 1
                tqdm.write(
                    f"medwss tile: {case.case_id}: {target.name} was made with other settings or inputs; tiling again",
                    file=sys.stderr,
                )
            yield case

    def settle(case: Case, result: dict[str, Any]) -> None:
        if result["ok"]:  # a failed case stays claimed until the job ends: a concurrent process does not retry it
            claims.release(tiles_target(out, case.case_id).name)
        if result["ok"]:
            stats["tiles"] += result["tiles"]
            job.done(case.case_id)
        else:
            job.fail(case.case_id, result["error"], "tile", case.image, error_class=result["error_class"])
        bar.update()

    t0 = time.perf_counter()
    workers = min(workers, max(len(cases), 1))  # no idle processes to start
    try:
        if workers == 1:
            for case in candidates():
                settle(case, _tile_one(case, cfg, out))
        else:
            _run_pool(candidates(), cfg, out, workers, settle)
    finally:
        claims.release_all()
        bar.close()
    summary = job.summary()
    stats.update(done=summary.done, skipped=summary.skipped, failed=summary.failed)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["workers"] = workers
    stats["shard"] = f"{where[0]}/{where[1]}" if where else None
    config = {"manifest": str(manifest.path.resolve()) if manifest.path else None, **cfg.model_dump()}
    write_run_record(out, "tile", config, metrics=dict(stats))
    stats["failed_cases"] = sorted(r["case_id"] for r in summary.failures)
    stats["failures"] = str(summary.log)
    return stats


def _run_pool(todo, cfg: TileConfig, out: Path, workers: int, settle) -> None:  # noqa: ANN001
    """Tile the cases of `todo` in `workers` spawned processes, at most `workers` claimed at a time.

    A worker process that dies (a crash in a slide library, the OOM killer) fails the cases it
    held and a fresh pool goes on with the rest.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    todo = iter(todo)
    pending: dict[Future, Case] = {}
    exhausted = False
    while True:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
        broken = False
        try:
            while True:
                while not exhausted and len(pending) < workers:
                    case = next(todo, None)
                    if case is None:
                        exhausted = True
                        break
                    try:
                        pending[pool.submit(_tile_one, case, cfg, out)] = case
                    except BrokenProcessPool:
                        settle(case, _died(case))
                        broken = True
                        break
                if broken or not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    case = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        result, broken = _died(case), True
                    settle(case, result)
                if broken:
                    for fut, case in list(pending.items()):  # the others of the dead pool
                        pending.pop(fut)
                        settle(case, _died(case))
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken and (exhausted and not pending):
            return


def _died(case: Case) -> dict[str, Any]:
    return {"case_id": case.case_id, "ok": False, "tiles": 0, "error_class": "WorkerDied",
            "error": "the tiling process stopped (crashed or killed, e.g. out of memory)"}  # fmt: skip
