"""Annotation rounds for a real team: init → select → (annotate) → ingest → train → select ...

Each step reads the state folder, does its work, and writes its results atomically before it
records itself, so a step interrupted at any point is simply run again: `select` recomputes the
same selection (seeded by the round number) and rewrites the export; `ingest` skips nothing it
has not recorded and re-reads the rest; `train` resumes from its per-epoch checkpoint.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from medwss.active.features import feature_provider
from medwss.active.ingest import scan_folder
from medwss.active.pool import SliceReader, build_pool
from medwss.active.state import ALConfig, ALState, parse_budget
from medwss.active.strategies import SelectionContext, get_strategy
from medwss.active.training import make_predictor, scribble_bounds, seg_config, train_on
from medwss.errors import ConfigError, InvalidDataError
from medwss.io.atomic import write_json


def init_project(
    manifest: str | Path, folder: str | Path, cfg: ALConfig, progress: bool = True
) -> tuple[ALState, list[str]]:
    """Build the slice pool of a manifest's volumes (``cfg.splits``) and write a new state folder."""
    from medwss.data.manifest import load_manifest

    cases = [c for c in load_manifest(manifest) if cfg.splits is None or c.split in cfg.splits]
    if not cases:
        raise ConfigError(f"no case of the manifest is in splits {cfg.splits}", manifest)
    pool, skipped = build_pool(cases, cfg.window, cfg.thumb_size, progress=progress)
    return ALState.create(folder, pool, cfg, source=str(manifest)), skipped


def _model_path(state: ALState) -> Path:
    return state.folder / "model" / "segmenter.pt"


def select_round(
    state: ALState,
    budget: str | None = None,
    strategy: str | None = None,
    out: str | Path | None = None,
    allow_pending: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the next slices, export them for annotation and record the round.

    Args:
        state: The project.
        budget: ``1%`` or a count (default: the config's).
        strategy: A strategy name (default: the config's).
        out: Export folder (default: ``<state>/rounds/round_NNN``).
        allow_pending: Select even though earlier selections still await annotation.
        progress: Show progress bars.

    Returns:
        The round record (round, strategy, budget, selected ids, export folder).
    """
    from medwss.active.export import export_slices
    from medwss.seg.train import load_segmenter

    cfg = state.config
    pending = state.pending_ids()
    if pending and not allow_pending:
        raise InvalidDataError(
            f"{len(pending)} selected slices still await annotation (e.g. {pending[0]}); "
            "ingest them first, or pass --allow-pending",
            state.folder,
        )
    name = strategy or cfg.strategy
    fn = get_strategy(name)
    number = len(state.rounds) + 1
    index = state.pool.index_of()
    taken = [index[s] for s in state.selected_ids()]
    k = parse_budget(budget or cfg.budget, len(state.pool))
    if k > len(state.pool) - len(taken):
        raise InvalidDataError(f"budget {k} exceeds the {len(state.pool) - len(taken)} slices left", state.folder)
    reader = SliceReader(cfg.window, cfg.label_spec)
    predict = None
    if _model_path(state).exists():
        model, seg_cfg, _ = load_segmenter(_model_path(state))
        predict = make_predictor(model, seg_cfg, state.pool.refs, reader)
    ctx = SelectionContext(
        n=len(state.pool),
        labelled=taken,
        features=feature_provider(state.pool, cfg.metric, state.folder / "features", progress),
        predict=predict,
        seed=cfg.seed * 1000 + number,
        mc_samples=cfg.mc_samples,
        fuse=dict(cfg.fuse),
        device=cfg.device,
    )
    chosen = fn(ctx, k)
    refs = [state.pool.refs[i] for i in chosen]
    export = Path(out) if out else state.folder / "rounds" / f"round_{number:03d}"
    spec = cfg.label_spec
    names = spec.names if spec is not None else ["background"] + [f"class {c}" for c in range(1, cfg.num_classes)]
    export_slices(refs, export, cfg.window, number, name, names, cfg.unlabelled, progress)
    record = {
        "round": number,
        "strategy": name,
        "budget": k,
        "selected": [r.slice_id for r in refs],
        "export": str(export),
        "model_used": predict is not None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    state.add_round(record)
    return record


def ingest_annotations(
    state: ALState, folder: str | Path, kind: str = "auto", unlabelled: int | None = None
) -> tuple[list[str], list[str]]:
    """Read the annotation files of a folder into the state.

    Args:
        state: The project.
        folder: Folder of annotation files.
        kind: ``full``, ``scribble`` or ``auto``.
        unlabelled: The value meaning "unlabelled" in these files, besides -1 and 255 in uint8
            files (default: the config's ``unlabelled``).

    Returns:
        The ids ingested and one message per rejected file.
    """
    cfg = state.config
    selected = set(state.selected_ids())
    refs = {r.slice_id: r for r in state.pool.refs if r.slice_id in selected}
    value = unlabelled if unlabelled is not None else cfg.unlabelled
    accepted, rejected = scan_folder(folder, refs, cfg.num_classes, value, kind)
    for ann in accepted:
        bounds = (
            scribble_bounds(ann.label, cfg.num_classes, cfg.size_upper_fraction) if ann.kind == "scribble" else None
        )
        state.add_annotation(ann.slice_id, ann.label, ann.kind, str(ann.source), bounds, ann.affine)
    return [a.slice_id for a in accepted], rejected


def train_model(state: ALState, epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the segmenter on every annotated slice; resumes an interrupted training of the same set."""
    from medwss.runinfo import write_run_record
    from medwss.seg.train import save_segmenter

    cfg = state.config
    ids = sorted(state.annotations)
    if not ids:
        raise InvalidDataError("no annotated slice yet: select, annotate and ingest first", state.folder)
    index = state.pool.index_of()
    refs = [state.pool.refs[index[s]] for s in ids]
    loaded = [state.load_annotation(s) for s in ids]
    kinds = [state.annotations[s]["kind"] for s in ids]
    base = cfg.seg.model_copy(update={"num_classes": cfg.num_classes, "device": cfg.device, "seed": cfg.seed})
    if epochs is not None:
        base = base.model_copy(update={"epochs": epochs})
    seg_cfg = seg_config(base, kinds, len(ids), cfg.size_weight, cfg.min_steps)
    digest = hashlib.sha256(("|".join(ids) + seg_cfg.model_dump_json()).encode()).hexdigest()[:12]
    ckpt = state.folder / "model" / f"train_{digest}.ckpt"
    reader = SliceReader(cfg.window, cfg.label_spec)
    t0 = time.perf_counter()
    model = train_on(refs, [lab for lab, _ in loaded], [b for _, b in loaded], reader, seg_cfg, ckpt, progress)
    meta = {"slices": ids, "kinds": sorted(set(kinds)), "rounds": len(state.rounds)}
    save_segmenter(model, seg_cfg, _model_path(state), meta)
    metrics = {"annotated": len(ids), "kinds": meta["kinds"], "seconds": time.perf_counter() - t0, "loss": seg_cfg.loss}
    write_run_record(state.folder / "model", "al train", seg_cfg.model_dump(), seg_cfg.seed, metrics)
    write_json(state.folder / "model" / "trained_on.json", meta)
    ckpt.unlink(missing_ok=True)
    return metrics


def project_status(state: ALState) -> dict[str, Any]:
    """Counts of the pool, the rounds, the annotations and the model."""
    n = len(state.pool)
    model = _model_path(state)
    return {
        "pool": n,
        "volumes": len({r.volume for r in state.pool.refs}),
        "rounds": len(state.rounds),
        "selected": len(state.selected_ids()),
        "annotated": len(state.annotations),
        "annotated_percent": 100.0 * len(state.annotations) / n,
        "pending": state.pending_ids(),
        "kinds": sorted({a["kind"] for a in state.annotations.values()}),
        "model": str(model) if model.exists() else None,
        "last_round": state.rounds[-1] if state.rounds else None,
    }
