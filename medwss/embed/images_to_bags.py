"""Bags for images a MIL model was not trained on: tile and embed them as its training bags were made.

A MIL model file records how its training bags were made (`embedding_of` its first bag:
`EMBEDDING_KEYS`); `embedding_configs` turns that record (and the flags that fill its gaps) into
the `TileConfig` and `EmbedConfig` that make bags like them, and `embed_cases` runs the tiling and
embedding jobs (`medwss.embed.tiling_job.tile_case`, `medwss.embed.job.embed_manifest`) on a list of
image cases. ``medwss mil predict|heatmap -i DIR`` on a folder of slides or volumes goes through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medwss.data.manifest import Case, Manifest
from medwss.jobs import Job

EMBEDDING_KEYS = ("encoder", "encoder_init", "kind", "tile_size", "mpp")
"""Bag attributes a MIL model file records (``meta["embedding"]``) so ``predict -i`` can embed new slides alike."""


def embedding_of(case: Case) -> dict[str, Any]:
    """How the case's bag was made (`EMBEDDING_KEYS` found in its attributes; empty for bags without them)."""
    from medwss.embed.store import load_bag

    attrs = load_bag(case.features).attrs if case.features else {}
    return {k: attrs[k] for k in EMBEDDING_KEYS if attrs.get(k) not in (None, "")}


def embedding_configs(
    meta: dict[str, Any],
    encoder: str | None = None,
    weights: str | None = None,
    tile_size: int | None = None,
    mpp: float | None = None,
    mode: str | None = None,
    device: str = "auto",
) -> tuple[Any, Any]:
    """The `TileConfig` and `EmbedConfig` that make bags like the model's training bags.

    From the model file's ``meta["embedding"]`` (`EMBEDDING_KEYS`: encoder, its ``encoder_init``,
    tile kind, size and mpp); the flags fill what it lacks and must agree with what it records.
    Not recorded (tile overlap, minimum tissue, ``tile_mm``): the `medwss tile` defaults.

    Raises:
        ConfigError: The model records no encoder and `encoder` is not given; the flags disagree
            with the record; or `weights` (or their absence) is not the encoder initialisation the
            training bags record (its sha256).
    """
    from medwss.embed.engine import EmbedConfig
    from medwss.embed.job import run_identity
    from medwss.embed.tiling_job import TileConfig
    from medwss.errors import ConfigError

    emb = dict(meta.get("embedding") or {})
    recorded = emb.get("encoder") or meta.get("encoder")
    if recorded and encoder and encoder != recorded:
        raise ConfigError(f"the model was trained on bags of encoder '{recorded}'; --encoder {encoder} differs")
    init = emb.get("encoder_init")
    if not init and not encoder:
        what = f"encoder '{recorded}' but not its weights" if recorded else "no encoder"
        raise ConfigError(
            f"the model file records {what} for its bags: to embed images pass --encoder NAME "
            "[--weights FILE] as given to `medwss embed` (or give -i a folder of bags)"
        )
    name = encoder or recorded
    seed = 0
    if isinstance(init, str) and init.startswith("random init seed "):
        seed = int(init.rsplit(" ", 1)[1])
    ecfg = EmbedConfig(encoder=name, weights=weights, seed=seed, device=device)
    if init:
        have = run_identity(ecfg)["encoder_init"]
        if have != init:
            hint = " (pass --weights FILE, the file given to `medwss embed`)" if init.startswith("weights") else ""
            raise ConfigError(f"the model's bags were embedded with {name} '{init}', these flags give '{have}'{hint}")
    kind = emb.get("kind")
    size = emb.get("tile_size")
    rec_size = int(size[0]) if isinstance(size, list) and size else (int(size) if size else None)
    rec_mode = kind if kind in ("axial2d", "stack25d", "patch3d") else None
    for flag, given, rec in (("--tile-size", tile_size, rec_size), ("--mpp", mpp, emb.get("mpp")),
                             ("--mode", mode, rec_mode)):  # fmt: skip
        if given is not None and rec is not None and given != rec:
            raise ConfigError(f"the model's bags were tiled with {flag.lstrip('-')} {rec}; {flag} {given} differs")
    fields: dict[str, Any] = {
        "tile_size": tile_size or rec_size,
        "mpp": mpp or emb.get("mpp"),
        "mode": mode or rec_mode,
    }
    if kind == "stack25d" and isinstance(size, list) and len(size) == 3:
        fields["depth"] = int(size[2])
    return TileConfig(**{k: v for k, v in fields.items() if v is not None}), ecfg


def embed_cases(
    cases: list[Case], tile_cfg: Any, embed_cfg: Any, work: str | Path, progress: bool = True, job: Job | None = None
) -> tuple[list[Case], list[dict[str, str]]]:
    """Tile (`medwss.embed.tiling_job.tile_case`) and embed (`medwss.embed.job.embed_manifest`) image cases into
    ``work/tiles`` and ``work/bags``; the cases that got a bag, with ``features`` set, and the failure
    rows (`medwss.jobs.FIELDS`, stage ``tile`` or ``embed``) of the others, recorded in `job` too.

    Tile files and bags made by the same settings are reused (as `medwss tile` / `medwss embed` do)."""
    from dataclasses import replace

    from medwss.embed.job import bag_path, embed_manifest, tiles_path
    from medwss.embed.tiling_job import stored_signature, tile_case, tile_signature
    from medwss.jobs import read_failures

    work = Path(work)
    tiles_dir, bags_dir = work / "tiles", work / "bags"
    tiles_dir.mkdir(parents=True, exist_ok=True)
    job = job if job is not None else Job(None)
    tiled: list[Case] = []
    cfg = tile_cfg.model_copy(update={"qa": False})
    for c in cases:
        target = tiles_path(tiles_dir, c.case_id)
        with job.attempt(c.case_id, "tile", c.image) as step:
            if not (target.exists() and stored_signature(target) == tile_signature(c, cfg)):
                tile_case(c, cfg, tiles_dir)
            tiled.append(c)
            step.leave()  # counted when predicted
    if tiled:
        embed_manifest(Manifest(None, tiled), tiles_dir, bags_dir, embed_cfg, progress=progress)
    ids = {c.case_id for c in tiled}
    for r in read_failures(bags_dir / "failures.csv"):
        if r["case_id"] in ids:
            job.fail(r["case_id"], r["message"], "embed", r["image"], error_class=r["error_class"])
    done = [replace(c, features=bag_path(bags_dir, c.case_id)) for c in tiled if bag_path(bags_dir, c.case_id).exists()]
    failed = [job.failures[c.case_id] for c in cases if job.failed(c.case_id)]
    return done, failed
