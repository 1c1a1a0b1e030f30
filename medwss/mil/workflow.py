"""The `medwss mil` workflows as functions: train from a manifest, predict, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.manifest import Case, Manifest
from medwss.errors import InvalidDataError
from medwss.io.atomic import write_json
from medwss.jobs import Job
from medwss.mil.base import MILOutput
from medwss.mil.data import LabelledBag, kfold_splits, load_bags, n_outputs, patient_split
from medwss.mil.train import MILTrainConfig, load_model, predict, save_model, train
from medwss.train import resolve_device
from medwss.train.device import seed_everything
from medwss.train.distributed import init_process_group, rank_info


def case_metrics(bags: list[LabelledBag], outs: list[MILOutput]) -> dict[str, Any]:
    """AUC with a bootstrap 95% CI, accuracy and balanced accuracy of case predictions."""
    from medwss.eval.metrics import classification_report

    y = np.stack([b.target.numpy() for b in bags])
    p = np.stack([o.probs.numpy() for o in outs])
    if y.shape[1] == 1:
        return classification_report(y[:, 0].astype(int), p[:, 0])
    return classification_report(y.argmax(1), p)


def _fit(manifest: Manifest, split: dict[str, list[Case]], cfg: MILTrainConfig, out: Path, progress: bool) -> dict:
    from medwss.mil.registry import create_aggregator

    labels = [int(c.label) for c in manifest.cases if c.label is not None]
    k = n_outputs(labels, manifest.path)
    failed: list[dict[str, str]] = []  # one bad bag fails its case only (recorded in metrics["failed"])
    bags = {name: load_bags(cases, k, tokens=cfg.tokens, failures=failed) for name, cases in split.items()}
    if not bags["train"]:
        first = failed[0]["error"] if failed else "no case"
        raise InvalidDataError(f"no training bag could be read ({len(failed)} failed; first: {first})")
    in_dim = bags["train"][0].bag.features.shape[1]
    for name in ("val", "test"):  # the width of the training bags decides
        for lb in [lb for lb in bags[name] if lb.bag.features.shape[1] != in_dim]:
            failed.append({"case_id": lb.case.case_id, "image": str(lb.case.features),
                           "error": f"{lb.case.features}: bag has {lb.bag.features.shape[1]} features per instance, the training bags {in_dim}"})  # fmt: skip
        bags[name] = [lb for lb in bags[name] if lb.bag.features.shape[1] == in_dim]
    kwargs = dict(cfg.aggregator_kwargs)
    grid = bags["train"][0].bag.grid_index
    if cfg.aggregator == "insight" and grid is not None and grid.shape[1] == 3:
        kwargs.setdefault("spatial_dims", 3)  # volume bags: a 3D tile grid
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = create_aggregator(cfg.aggregator, in_dim, k, **kwargs)
    info = rank_info()
    device = resolve_device(cfg.device, info.local_rank)
    result = train(model, bags["train"], bags["val"], cfg, out, device, progress, info)
    embedding = _embedding_of(bags["train"][0].case)
    meta = {"aggregator": cfg.aggregator, "aggregator_kwargs": kwargs, "in_dim": in_dim, "n_classes": k,
            "encoder": embedding.get("encoder"), "embedding": embedding, "config": cfg.model_dump()}  # fmt: skip
    metrics: dict[str, Any] = {"best_epoch": result["best_epoch"], "stopped_early": result["stopped_early"],
                               "cases": {s: len(b) for s, b in bags.items()}, "failed": failed}  # fmt: skip
    if info.is_main:
        save_model(out / "model.pt", model.cpu(), meta)
        for name in ("val", "test"):
            if bags[name]:
                metrics[name] = case_metrics(bags[name], predict(model, bags[name], torch.device("cpu")))
        write_json(out / "metrics.json", metrics)
    return metrics


EMBEDDING_KEYS = ("encoder", "encoder_init", "kind", "tile_size", "mpp")
"""Bag attributes a MIL model file records (``meta["embedding"]``) so ``predict -i`` can embed new slides alike."""


def _embedding_of(case: Case) -> dict[str, Any]:
    """How the case's bag was made (`EMBEDDING_KEYS` found in its attributes; empty for bags without them)."""
    from medwss.embed.store import load_bag

    attrs = load_bag(case.features).attrs if case.features else {}
    return {k: attrs[k] for k in EMBEDDING_KEYS if attrs.get(k) not in (None, "")}


def train_from_manifest(manifest: Manifest, cfg: MILTrainConfig, out: str | Path, progress: bool = True) -> dict:
    """Train on the manifest's cases (split column, or a seeded patient-level split, or k folds)."""
    out = Path(out)
    created = init_process_group(rank_info())
    try:
        if cfg.folds:
            folds = [
                _fit(manifest, s, cfg, out / f"fold{i}", progress)
                for i, s in enumerate(kfold_splits(manifest, cfg.folds, cfg.seed))
            ]
            aucs = [f["val"]["auc"] for f in folds if "val" in f]
            summary = {"folds": folds, "val_auc_mean": float(np.mean(aucs)) if aucs else None,
                       "val_auc_sd": float(np.std(aucs)) if aucs else None}  # fmt: skip
            if rank_info().is_main:
                write_json(out / "metrics.json", summary)
            return summary
        split = patient_split(manifest, cfg.val_fraction, cfg.seed)
        if not split["train"]:
            raise InvalidDataError("no labelled training cases in the manifest", manifest.path)
        return _fit(manifest, split, cfg, out, progress)
    finally:
        if created:
            torch.distributed.destroy_process_group()


def predict_manifest(
    manifest: Manifest, model_path: str | Path, tokens: bool = False
) -> tuple[list[Case], list[MILOutput]]:
    """Case probabilities and instance scores for every case with a bag."""
    model, meta = load_model(model_path)
    cases = [c for c in manifest.cases if c.features is not None]
    if not cases:
        raise InvalidDataError("no case has a 'features' bag", manifest.path)
    bags = load_bags(cases, meta["n_classes"], tokens=tokens, require_label=False)
    return cases, predict(model, bags, torch.device("cpu"))


def predict_cases(
    cases: list[Case], model_path: str | Path, tokens: bool = False, job: Job | None = None
) -> tuple[list[Case], list[MILOutput], list[dict[str, str]]]:
    """Like `predict_manifest`, one case at a time through `job` (`medwss.jobs.Job`, stage ``predict``):
    a bag that cannot be read or does not fit the model (another feature size) fails its case only.

    Returns:
        The cases predicted, their outputs, and the failure rows (`medwss.jobs.FIELDS`) of the others.
    """
    from medwss.embed.store import load_bag
    from medwss.mil.data import bag_tensors

    model, meta = load_model(model_path)
    job = job if job is not None else Job(None)
    kept: list[Case] = []
    outs: list[MILOutput] = []
    for c in cases:
        with job.attempt(c.case_id, "predict", c.features):
            if c.features is None:
                raise InvalidDataError(f"case {c.case_id} has no 'features' bag")
            fb = load_bag(c.features, tokens=tokens)
            if len(fb) == 0:
                raise InvalidDataError("bag holds no instances", c.features)
            dim = int(fb.features.shape[1])
            if meta.get("in_dim") is not None and dim != int(meta["in_dim"]):
                enc = meta.get("encoder") or "its encoder"
                raise InvalidDataError(
                    f"bag has {dim} features per instance, the model takes {meta['in_dim']} (bags of {enc})",
                    c.features,
                )
            bag = LabelledBag(c, bag_tensors(fb, tokens), torch.full((int(meta["n_classes"]),), float("nan")))
            outs.append(predict(model, [bag], torch.device("cpu"))[0])
            kept.append(c)
    failed = [job.failures[c.case_id] for c in cases if job.failed(c.case_id)]
    return kept, outs, failed


def heatmaps_for_cases(
    cases: list[Case],
    model_path: str | Path,
    out: str | Path,
    threshold: float = 0.5,
    progress: bool = True,
    skipped: list[dict[str, str]] | None = None,
    job: Job | None = None,
) -> dict[str, Any]:
    """`write_heatmaps` for cases without a manifest (``heatmap -i DIR``): the same files per case,
    through `job` (default: one logging to ``out/failures.csv``): cases that fail (bags that cannot
    be read included) and the `skipped` ``{"case_id", "error"}`` rows of a folder scan are recorded.

    Returns:
        ``done``, ``failed`` (counts), ``cases`` (per case its probabilities and files) and ``summary``
        (`medwss.jobs.JobSummary`).
    """
    from medwss.embed.store import load_bag
    from medwss.mil.heatmaps import write_case

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    job = job if job is not None else Job(out / "failures.csv")
    for f in skipped or []:
        job.fail(f["case_id"], f["error"], "scan", f.get("image", f.get("path")))
    kept, outs, _ = predict_cases(cases, model_path, job=job)
    records: list[dict[str, Any]] = []

    def one(pair: tuple[Case, MILOutput]) -> None:
        case, o = pair
        fb = load_bag(case.features)  # type: ignore[arg-type]
        files = write_case(case, fb, o.scores[:, -1].numpy(), out, threshold)
        records.append({"case_id": case.case_id, "prob": o.probs.tolist(), **files})

    job.run(
        list(zip(kept, outs, strict=True)), one, case_id=lambda p: p[0].case_id, stage="heatmap",
        image=lambda p: p[0].image if p[0].images else p[0].features, progress=progress, desc="heatmaps",
    )  # fmt: skip
    summary = job.summary()
    return {"done": len(records), "failed": summary.failed, "cases": records, "summary": summary}


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


def write_heatmaps(
    manifest: Manifest, model_path: str | Path, out: str | Path, threshold: float = 0.5, progress: bool = True
) -> dict[str, Any]:
    """Heatmap files for every case of `manifest`; see `medwss.mil.heatmaps`.

    One case at a time (`heatmaps_for_cases`; the files are `medwss.mil.heatmaps.write_case`'s): a case without a bag, or whose
    bag cannot be read, holds NaN features or does not fit the model, is recorded in
    ``failures.csv`` and the others go on.
    """
    return heatmaps_for_cases(list(manifest.cases), model_path, out, threshold=threshold, progress=progress)
