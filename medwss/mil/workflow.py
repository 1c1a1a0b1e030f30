"""The `medwss mil` workflows as functions: train from a manifest, predict, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.manifest import Case, Manifest
from medwss.embed.images_to_bags import embedding_of
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
    embedding = embedding_of(bags["train"][0].case)
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


def write_heatmaps(
    manifest: Manifest, model_path: str | Path, out: str | Path, threshold: float = 0.5, progress: bool = True
) -> dict[str, Any]:
    """Heatmap files for every case of `manifest`; see `medwss.mil.heatmaps`.

    One case at a time (`heatmaps_for_cases`; the files are `medwss.mil.heatmaps.write_case`'s): a case without a bag, or whose
    bag cannot be read, holds NaN features or does not fit the model, is recorded in
    ``failures.csv`` and the others go on.
    """
    return heatmaps_for_cases(list(manifest.cases), model_path, out, threshold=threshold, progress=progress)
