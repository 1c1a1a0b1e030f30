"""The `medwss mil` workflows as functions: train from a manifest, predict, evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.manifest import Case, Manifest
from medwss.errors import InvalidDataError
from medwss.io.atomic import write_text
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
    k = n_outputs(labels)
    bags = {name: load_bags(cases, k, tokens=cfg.tokens) for name, cases in split.items()}
    in_dim = bags["train"][0].bag.features.shape[1]
    kwargs = dict(cfg.aggregator_kwargs)
    grid = bags["train"][0].bag.grid_index
    if cfg.aggregator == "insight" and grid is not None and grid.shape[1] == 3:
        kwargs.setdefault("spatial_dims", 3)  # volume bags: a 3D tile grid
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = create_aggregator(cfg.aggregator, in_dim, k, **kwargs)
    info = rank_info()
    device = resolve_device(cfg.device, info.local_rank)
    result = train(model, bags["train"], bags["val"], cfg, out, device, progress, info)
    meta = {"aggregator": cfg.aggregator, "aggregator_kwargs": kwargs, "in_dim": in_dim, "n_classes": k,
            "encoder": _encoder_of(split["train"][0]), "config": cfg.model_dump()}  # fmt: skip
    metrics: dict[str, Any] = {"best_epoch": result["best_epoch"], "stopped_early": result["stopped_early"],
                               "cases": {s: len(b) for s, b in bags.items()}}  # fmt: skip
    if info.is_main:
        save_model(out / "model.pt", model.cpu(), meta)
        for name in ("val", "test"):
            if bags[name]:
                metrics[name] = case_metrics(bags[name], predict(model, bags[name], torch.device("cpu")))
        write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _encoder_of(case: Case) -> str | None:
    from medwss.embed.store import load_bag

    return load_bag(case.features).attrs.get("encoder") if case.features else None


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
                write_text(out / "metrics.json", json.dumps(summary, indent=2))
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
