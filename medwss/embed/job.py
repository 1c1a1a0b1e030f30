"""`embed_manifest`: every case of a manifest through the engine, sharded across ranks, resumable.

Each rank embeds its share of the cases (balanced by tile count) and writes one bag per case
(``OUT/<case_id>.h5``, atomically). Every bag records what made it (`run_identity`: the encoder
name, ``encoder_init`` — the sha256 of its weights or TorchScript file, or ``random init seed N`` —
and ``tiles_sha256``, the checksum of the tile file it was made from). A re-run skips a bag only
when all of these match, and redoes (saying so on stderr) a bag made by another network or from
tiles written since (``tile --overwrite`` with other settings); random-init encoders are seeded
(`EmbedConfig.seed`), so two runs or two ranks build the same network. A case that fails goes to
the failures file with its reason and the job goes on; job-wide problems (an unknown encoder, a
missing weights file) fail before any case, and a weights file that does not fit the encoder fails
every case with the same one-line error (the encoder is built once). Tiles are medwss tile files
or CLAM/TRIDENT coordinate files (`medwss.embed.tiles.find_tiles`, `tiles_from_coords`); slide bags
carry CLAM's and TRIDENT's attributes on ``coords`` (`medwss.embed.store.slide_coords_attrs`). At the end
rank 0 merges the ranks' failure files and writes ``OUT/manifest.csv`` (the input manifest with the
``features`` column filled for every case that has a bag) and ``OUT/run.json``.

Clusters and shared folders (`medwss.embed.sharing`): ``shard=(i, n)`` (``medwss embed --shard
i/n``, or a SLURM job array) takes the i-th of n round-robin shares of the sorted case ids, the same
split as ``medwss tile --shard``; any number of processes (shards, or plain runs started twice) on
one output folder share the cases through per-case claim files (``<case_id>.h5.claim``), so each
case is embedded once, and write one ``failures.csv`` under a lock. Each shard's rank 0 writes
``manifest.csv`` with the bags present when it finishes (the last shard to finish lists them all;
a re-run without ``--shard`` skips every bag and writes the full one).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medwss.data.manifest import Case, Manifest, write_manifest
from medwss.embed.engine import EmbedConfig, bag_from_tiles, embed_tiles
from medwss.embed.reader import TileReader
from medwss.embed.store import FeatureBag, bag_mismatch, save_bag, slide_coords_attrs
from medwss.embed.tiles import TileSet, find_tiles, is_medwss_tiles, load_tiles, tiles_from_coords
from medwss.errors import ConfigError, MedwssError, require_file
from medwss.io.atomic import clean_stale_temps
from medwss.io.limits import LimitExceededError, human_bytes, limit
from medwss.jobs import FailureLog, Job, read_failures
from medwss.train.device import resolve_device
from medwss.train.distributed import RankInfo, barrier, init_process_group, rank_info
from medwss.train.distributed import shard as balanced_shards


def tiles_path(tiles_dir: Path, case_id: str) -> Path:
    return Path(tiles_dir) / f"{case_id}.tiles.h5"


def bag_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}.h5"


def case_tiles(tiles_dir: Path, case: Case, single: bool = False) -> Path | None:
    """The case's tile file under ``--tiles`` (a folder or one file): medwss's, CLAM's or TRIDENT's."""
    return find_tiles(tiles_dir, case.case_id, case.image if case.modality == "WSI" else None, single)


def read_case_tiles(source: Path, case: Case, mpp_override: float | None = None) -> TileSet:
    """A medwss tile file, or a CLAM/TRIDENT coordinates file read against the case's slide."""
    if is_medwss_tiles(source):
        return load_tiles(source)
    return tiles_from_coords(source, case.image, case.case_id, mpp_override)


def _tile_count(path: Path | None) -> int:
    import h5py

    if path is None:
        return 1
    try:
        with h5py.File(path, "r") as f:
            return int(f["coords"].shape[0])
    except (OSError, KeyError, TypeError):
        return 1


def clam_attrs(tiles: TileSet, image: Path | str, mpp_override: float | None) -> dict[str, Any]:
    """CLAM/TRIDENT ``coords`` attributes of a slide bag, with the level's downsample and size read from the slide."""
    if tiles.kind != "slide":
        return {}
    from medwss.io.slide import open_slide

    attrs = {"kind": "slide", "span": tiles.span, "tile_size": list(tiles.tile_size), "level": tiles.level,
             "mpp": tiles.mpp, "case_id": tiles.case_id}  # fmt: skip
    overlap = tiles.attrs.get("overlap")
    try:
        with open_slide(image, mpp=mpp_override) as slide:
            level = int(tiles.level or 0)
            return slide_coords_attrs(
                attrs,
                float(slide.level_downsamples[level]),
                tuple(slide.level_dimensions[level]),
                slide.objective_power,
                float(slide.mpp) if slide.has_mpp else tiles.attrs.get("slide_mpp"),
                overlap,
            )
    except Exception:  # the bag is still valid without them: level-0 values from its own attributes
        return slide_coords_attrs(attrs, overlap=overlap)


def _spatial_dims(tiles: TileSet) -> int:
    return 3 if tiles.kind == "patch3d" else 2


def _in_channels(tiles: TileSet, case: Case) -> int:
    if tiles.kind == "slide":
        return 3
    channels = len(case.images)
    return channels * tiles.tile_size[2] if tiles.kind == "stack25d" else channels


class _Encoders:
    """Encoders built on demand, one per (spatial dims, input channels) met in the manifest."""

    def __init__(self, config: EmbedConfig, device) -> None:  # noqa: ANN001
        self.config = config
        self.device = device
        self._cache: dict[tuple[int, int], Any] = {}
        self._errors: dict[tuple[int, int], MedwssError] = {}

    def get(self, spatial_dims: int, in_channels: int):  # noqa: ANN201
        key = (spatial_dims, in_channels)
        if key in self._errors:  # e.g. weights that do not fit: the same error for every case, built once
            raise self._errors[key]
        if key not in self._cache:
            from medwss.embed.encoders import create_encoder

            try:
                with torch.random.fork_rng(devices=[]):  # seeded, so random-init networks are reproducible
                    torch.manual_seed(self.config.seed)
                    enc = create_encoder(
                        self.config.encoder, spatial_dims=spatial_dims, in_channels=in_channels,
                        weights=self.config.weights, **self.config.encoder_options,
                    )  # fmt: skip
            except MedwssError as exc:
                self._errors[key] = exc
                raise
            self._cache[key] = enc.to(self.device).eval()
        return self._cache[key]


def run_identity(config: EmbedConfig) -> dict[str, str]:
    """What identifies the network of a run: ``encoder`` and ``encoder_init``.

    ``encoder_init`` is ``weights sha256:<hex>`` with `config.weights`, ``torchscript sha256:<hex>``
    for a TorchScript encoder, ``no weights`` for weight-free encoders (``stats``), else
    ``random init seed <seed>``.

    Raises:
        ConfigError: Unknown encoder. FileNotFound: missing weights or TorchScript file.
    """
    from medwss.embed.encoders import TORCHSCRIPT_PREFIX, encoder_entry, sha256_file

    name = config.encoder
    if name.startswith(TORCHSCRIPT_PREFIX):
        init = "torchscript sha256:" + sha256_file(require_file(name[len(TORCHSCRIPT_PREFIX) :]))
        return {"encoder": name, "encoder_init": init}
    entry = encoder_entry(name)
    if config.weights:
        if not entry.parametric:
            raise ConfigError(f"encoder '{name}' has no weights to load", config.weights)
        init = "weights sha256:" + sha256_file(require_file(config.weights))
    else:
        init = f"random init seed {config.seed}" if entry.parametric else "no weights"
    if config.encoder_options:
        init += "; options " + json.dumps(config.encoder_options, sort_keys=True, default=str)
    return {"encoder": name, "encoder_init": init}


def tiles_checksum(path: Path) -> str:
    from medwss.embed.encoders import sha256_file

    return sha256_file(path)


def check_batch(tiles: TileSet, in_channels: int, batch_size: int, path: Path) -> None:
    """Refuse a batch of tiles whose float32 array would exceed ``MEDWSS_MAX_VOLUME_BYTES``, before reading any."""
    size = list(tiles.tile_size) * (2 if tiles.kind == "slide" else 1)
    n = min(batch_size, max(len(tiles), 1)) * in_channels * int(np.prod(size, dtype=np.int64)) * 4
    cap = limit("MEDWSS_MAX_VOLUME_BYTES")
    if n > cap:
        raise LimitExceededError(
            f"a batch of {batch_size} tiles of {'x'.join(map(str, size))} x {in_channels} channels needs "
            f"{human_bytes(n)}, over {human_bytes(cap)} (lower --batch-size, or set MEDWSS_MAX_VOLUME_BYTES)",
            path,
        )


def embed_manifest(
    manifest: Manifest,
    tiles_dir: str | Path,
    out_dir: str | Path,
    config: EmbedConfig,
    overwrite: bool = False,
    progress: bool = True,
    info: RankInfo | None = None,
    shard: str | tuple[int, int] | None = None,
    claim_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Embed every case of `manifest` whose tiles are in `tiles_dir`; bags go to `out_dir`.

    Args:
        manifest: The cases.
        tiles_dir: Their tile files (a folder, or one file for a one-case manifest).
        out_dir: The output folder.
        config: Encoder and embedding settings.
        overwrite: Redo cases whose bag was written before this run (even a matching one).
        progress: Progress bars (rank 0).
        info: This process's torchrun/SLURM rank (default `rank_info()`); the ranks split the cases
            of the shard, balanced by tile count.
        shard: ``"i/n"`` or ``(i, n)``: only the i-th of n round-robin shares of the sorted case ids
            (`medwss.embed.sharing.shard_cases`, as `medwss tile --shard`); None: every case.
        claim_timeout_s: Another process's claim not refreshed for this long is stale
            (default `medwss.embed.sharing.CLAIM_TIMEOUT_S`).

    Returns:
        Counts for this rank (``done``, ``skipped``, ``failed``, ``busy`` — left to another process
        holding their claim —, ``tiles``, ``seconds``, ``total``, ``shard``) and, on rank 0, the path of
        the output manifest.
    """
    from medwss.embed.sharing import CLAIM_TIMEOUT_S, CaseClaims, SharedFailureLog, resolve_shard, shard_cases

    info = info or rank_info()
    where = resolve_shard(shard)
    created = init_process_group(info)
    tiles_dir, out_dir = Path(tiles_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = run_identity(config)  # job-wide: an unknown encoder or missing weights fail here, once
    started = time.time()
    if info.is_main:
        clean_stale_temps(out_dir, started)  # left by a run killed mid-write (live writers' files are kept)
    single = len(manifest.cases) == 1
    cases = shard_cases(manifest.cases, where)
    sources = {c.case_id: case_tiles(tiles_dir, c, single) for c in cases}
    mine = [
        cases[i] for i in balanced_shards([_tile_count(sources[c.case_id]) for c in cases], info.world_size)[info.rank]
    ]
    tag = f"shard{where[0]}." if where else ""
    failures: FailureLog
    if info.world_size == 1:
        failures = SharedFailureLog(out_dir / "failures.csv")  # shards and concurrent processes share it
    else:
        failures = FailureLog(out_dir / f"failures.{tag}rank{info.rank}.csv", fresh=True)
    claims = CaseClaims(out_dir, CLAIM_TIMEOUT_S if claim_timeout_s is None else claim_timeout_s)
    device = resolve_device(config.device, info.local_rank)
    encoders = _Encoders(config, device)
    stats: dict[str, Any] = {
        "done": 0, "skipped": 0, "redone_stale": 0, "failed": 0, "busy": 0, "tiles": 0, "seconds": 0.0,
        "rank": info.rank, "total": len(cases), "shard": f"{where[0]}/{where[1]}" if where else None,
    }  # fmt: skip
    show = progress and info.is_main
    overall = tqdm(mine, desc=f"embed [{config.encoder}]", unit="case", disable=not show)
    t0 = time.perf_counter()

    def current(target: Path) -> bool:  # a bag to check against the run (not one --overwrite redoes)
        if not target.is_file():
            return False
        if not overwrite:
            return True
        try:
            return target.stat().st_mtime >= started  # written during this run, by a process sharing it
        except OSError:
            return False

    job = Job(failures)
    try:
        for case in overall:
            target = bag_path(out_dir, case.case_id)
            found = sources[case.case_id]
            with job.attempt(case.case_id, "embed", case.image) as step:
                if found is None:
                    raise MedwssError(
                        f"no tiles in {tiles_dir} (looked for {case.case_id}.tiles.h5 and CLAM/TRIDENT "
                        f"{case.case_id}.h5, {case.case_id}_patches.h5; run `medwss tile` first; see its failures.csv)"
                    )
                source = found
                expect = {**identity, "tiles_sha256": tiles_checksum(source)}
                if current(target) and bag_mismatch(target, expect) is None:
                    step.skip()
                    continue
                if not claims.claim(target.name):
                    stats["busy"] += 1  # another process is embedding it
                    step.leave()
                    continue
                if current(target):  # it may have been finished meanwhile
                    why = bag_mismatch(target, expect)
                    if why is None:
                        claims.release(target.name)
                        step.skip()
                        continue
                    stats["redone_stale"] += 1
                    tqdm.write(f"medwss embed: {case.case_id}: existing bag {why}; embedding again", file=sys.stderr)
                tiles = read_case_tiles(source, case, config.mpp_override)
                # a slide whose level-0 mpp `tile --mag` took from its objective power is read with that mpp
                mpp_override = config.mpp_override or tiles.attrs.get("assumed_slide_mpp")
                reader = TileReader(tiles, case.images, case.modality, mpp_override, config.ct_window, config.nan)
                in_channels = _in_channels(tiles, case)
                check_batch(tiles, in_channels, config.batch_size, source)
                encoder = encoders.get(_spatial_dims(tiles), in_channels)
                with tqdm(total=len(tiles), desc=case.case_id, unit="tile", leave=False, disable=not show) as bar:
                    features, tokens = embed_tiles(encoder, reader, config, device, bar)
                reader.close()
                if features.size and not np.isfinite(features).all():
                    raise MedwssError(f"the encoder gave NaN or infinite features for {source.name}")
                bag: FeatureBag = bag_from_tiles(reader, features, tokens, encoder)
                bag.attrs.update(expect)
                bag.coords_attrs.update(clam_attrs(tiles, case.image, mpp_override))
                save_bag(bag, target, dtype=config.dtype)
                stats["tiles"] += len(tiles)
                claims.release(target.name)  # a failed case stays claimed until the job ends
    finally:
        claims.release_all()  # also when interrupted: a later call in this process may take them
    summary = job.summary()
    stats.update(done=summary.done, skipped=summary.skipped, failed=summary.failed)
    stats["seconds"] = time.perf_counter() - t0
    barrier()
    if info.is_main:
        if info.world_size > 1:
            finished = {c.case_id for c in cases if bag_path(out_dir, c.case_id).exists()}
            parts = sorted(out_dir.glob(f"failures.{tag}rank*.csv"))
            SharedFailureLog(out_dir / "failures.csv").merge(parts, finished)
        stats["manifest"] = str(write_output_manifest(manifest, out_dir))
        ids = {c.case_id for c in cases}  # this shard's cases, whichever rank failed them
        stats["failures_total"] = sum(r["case_id"] in ids for r in read_failures(out_dir / "failures.csv"))
    barrier()
    if created:
        import torch.distributed as dist

        dist.destroy_process_group()
    return stats


def write_output_manifest(manifest: Manifest, out_dir: Path) -> Path:
    """The input manifest with ``features`` set to each case's bag (cases without a bag are left out)."""
    root = manifest.path.parent if manifest.path else Path.cwd()
    rows = []
    for c in manifest.cases:
        bag = bag_path(out_dir, c.case_id)
        if not bag.exists():
            continue
        row: dict[str, Any] = {"case_id": c.case_id, "patient_id": c.patient_id, "site": c.site, "modality": c.modality}
        for ch, p in c.images.items():
            row["image" if ch == "image" else f"image_{ch}"] = p.resolve()
        row.update({"label": c.label, "mask": c.mask.resolve() if c.mask else None, "split": c.split})
        row["scribble"] = c.scribble.resolve() if c.scribble else None
        row["features"] = bag.resolve()
        row.update({f"meta_{k}": _meta_value(v, root) for k, v in c.meta.items()})
        rows.append(row)
    return write_manifest(rows, out_dir / "manifest.csv")


def _meta_value(value: str, root: Path) -> str | Path:
    """Free-form values that name a file beside the input manifest become paths, so they still resolve."""
    if value and not Path(value).is_absolute() and (root / value).is_file():
        return (root / value).resolve()
    return value
