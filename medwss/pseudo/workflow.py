"""Manifest-level pipelines behind `medwss pseudo ...`: one function per method, plus writing and evaluation.

Every method takes sliced cases (`SliceCase`) and its config (a `PseudoConfig` subclass of
`medwss.pseudo.config`) and returns, per case, a list of
per-slice pseudo-label maps (int64, `IGNORE` = -1). `write_outputs` pastes them back onto the source
grid (the case's `SliceGeometry`) and writes int16 NIfTI with PNG previews and, where masks exist,
metrics CSV/JSON. Weak labels derived from the masks come from `medwss.data.weak.make_weak_label`.

Inside an active per-case job (``with job.active():`` of a `medwss.jobs.Job`, what `medwss pseudo
<method>` runs in), a case whose per-case step raises one of `medwss.jobs.CASE_ERRORS` (its boxes,
tags, weak labels, prediction) is recorded in the job (stage: the step's name) and gets None instead
of labels; the other cases go on, and steps over all cases (training, priors, prototypes, the
threshold sweep) use the cases that are left. Without an active job the error propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from medwss.data.weak import make_weak_label, tags_of
from medwss.errors import InvalidDataError
from medwss.jobs import Job, current_job
from medwss.pseudo.cams import cam_threshold_labels, cams_and_features, train_cam_model
from medwss.pseudo.config import (
    AgmmPseudoConfig,
    BoxPseudoConfig,
    CamMapSettings,
    CamPseudoConfig,
    CpalPseudoConfig,
    DhrPseudoConfig,
    DuplPseudoConfig,
    FusePseudoConfig,
    ParPseudoConfig,
    PseudoConfig,
    ReachPseudoConfig,
    SparseLabelSettings,
)
from medwss.pseudo.volumes import SliceCase, slice_boxes, slice_case

Labels = list[list[np.ndarray] | None]
"""Per case, its per-slice label maps; None for a case that failed (only inside an active `Job`)."""
Maps = list[list[np.ndarray] | None]
T = TypeVar("T")


def per_case(
    cases: Sequence[SliceCase],
    fn: Callable[..., T],
    *inputs: Sequence[Any],
    desc: str | None = None,
    progress: bool = False,
) -> list[T | None]:
    """``fn(case, *inputs[i])`` for every case; None where an input is None (the case failed earlier) or,
    inside an active `medwss.jobs.Job`, where `fn` raises (the case is recorded there as failed, once,
    with stage `desc` or `fn`'s name) or the case has already failed."""
    job = current_job()
    name = getattr(fn, "__name__", "")
    stage = desc or (name.strip("_") if name and name != "<lambda>" else "") or "method"
    out: list[T | None] = []
    for i, c in enumerate(tqdm(cases, desc=desc, leave=False, disable=not progress)):
        args = [x[i] for x in inputs]
        if any(a is None for a in args) or (job is not None and job.failed(c.case_id)):
            out.append(None)  # failed in an earlier step: recorded once
            continue
        if job is None:
            out.append(fn(c, *args))
            continue
        out.append(job.call(c.case_id, fn, c, *args, stage=stage, image=getattr(c, "image", None)))
    return out


def _kept(*per: Sequence[Any]) -> list[int]:
    """Positions where every list has a value (the cases that have not failed)."""
    return [i for i in range(len(per[0])) if all(x[i] is not None for x in per)]


def load_cases(
    manifest: Iterable[Any], cfg: PseudoConfig, progress: bool = False, job: Job | None = None
) -> tuple[list[SliceCase], list[str]]:
    """Slice every case through `job` (stage ``load``; default one without a log file); a case that
    fails to load is skipped and reported as ``"case_id: reason"`` (and recorded in `job`)."""
    job = job if job is not None else Job(None)
    items = list(manifest)
    loaded = job.run(items, lambda case: slice_case(case, cfg), stage="load", progress=progress)
    cases = [c for c in loaded if c is not None]
    failed = [f"{r['case_id']}: {r['message']}" for r in (job.failures.get(c.case_id) for c in items) if r]
    return cases, failed


def _tags(c: SliceCase, n_classes: int) -> list[np.ndarray]:
    if c.gts is None:
        raise InvalidDataError(f"case {c.case_id} has no mask: slice tags (image labels) come from the mask column")
    return [tags_of(g, n_classes) for g in c.gts]


def slice_tags(cases: Sequence[SliceCase], n_classes: int) -> Maps:
    """Per case and slice, (K,) class presence from the masks (the image-level labels)."""
    return per_case(cases, _tags, [n_classes] * len(cases))


def weak_slices(c: SliceCase, kind: str, seed: int, **options: Any) -> list[np.ndarray]:
    """Per slice of a case, `make_weak_label` of its mask (seed ``seed + canonical slice index``)."""
    if c.gts is None:
        raise InvalidDataError(f"case {c.case_id} has no mask: {kind} labels are derived from the mask column")
    return [make_weak_label(g, kind, seed + k, **options) for g, k in zip(c.gts, c.geometry.indices, strict=True)]


def case_points(cases: Sequence[SliceCase], cfg: PseudoConfig) -> Maps:
    """Per case and slice, point labels (3 clicks per component, background marks) derived from the masks."""
    return per_case(cases, lambda c: weak_slices(c, "point", cfg.seed, n_points=3))


def _trained_meta(cfg: PseudoConfig) -> dict[str, Any]:
    return {"classes": cfg.classes(), "train_config": cfg.model_dump(mode="json")}


def compute_cams(
    cases: Sequence[SliceCase],
    cfg: CamMapSettings,
    progress: bool = False,
    out_dir: str | Path | None = None,
    prefix: str = "",
) -> tuple[Maps, Maps]:
    """Per case and slice, activation maps (K-1, H, W) in [0, 1] and per-pixel features (F, H, W).

    ``cam_source="points"``: intensity likelihood × closeness to point labels, with
    intensity/position features. ``cam_source="tags"``: a tag classifier trained on patch tags,
    its CAMs and its penultimate features. Weak labels are derived from the masks.

    With `out_dir`, the tag classifier trains from and to ``out_dir/<prefix>checkpoint.pt``
    (resumed when present) and is saved as ``out_dir/<prefix>model.pt`` (kind ``pseudo_cam``).
    """
    from medwss.pseudo.agmm import position_features
    from medwss.pseudo.cams import point_cams, point_stats

    k = len(cfg.classes())
    tags = slice_tags(cases, k)
    if cfg.cam_source == "points":
        pts = case_points(cases, cfg)
        ok = _kept(tags, pts)
        stats = point_stats([r for i in ok for r in cases[i].raw], [p for i in ok for p in pts[i]], k)  # type: ignore[union-attr]
        cams = per_case(
            cases,
            lambda c, ps, _t: [
                point_cams(r, p, k, stats, cfg.point_sigma * c.scale) for r, p in zip(c.raw, ps, strict=True)
            ],
            pts,
            tags,
        )
        feats = per_case(cases, lambda c, _m: [position_features(im[0]).astype(np.float32) for im in c.images], cams)
        return cams, feats
    ok = _kept(tags)
    if not ok:
        raise InvalidDataError("no case has a mask to derive slice tags from")
    images = [im for i in ok for im in cases[i].images]
    gts = [g for i in ok for g in cases[i].gts]  # type: ignore[union-attr]
    out = None if out_dir is None else Path(out_dir)
    model = train_cam_model(
        images, gts, k, cfg.cam_epochs, cfg.cam_crop, width=cfg.cam_width, seed=cfg.seed, progress=progress,
        device=cfg.device, amp=cfg.amp, checkpoint=None if out is None else out / f"{prefix}checkpoint.pt",
    )  # fmt: skip
    if out is not None:
        from medwss.pseudo.cams import save_cam_model

        save_cam_model(out / f"{prefix}model.pt", model, _trained_meta(cfg))

    def one(c: SliceCase, ts: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        cc, ff = cams_and_features(model, c.images)
        return [m * t[1:, None, None] for m, t in zip(cc, ts, strict=True)], ff

    both = per_case(cases, one, tags)
    return [b[0] if b else None for b in both], [b[1] if b else None for b in both]


def cam_baseline(cams: Maps, cfg: CamPseudoConfig) -> Labels:
    """The plain activation-map threshold."""
    return [None if cc is None else [cam_threshold_labels(m, cfg.cam_tau) for m in cc] for cc in cams]


def run_box(
    cases: Sequence[SliceCase], cfg: BoxPseudoConfig, boxes_file: str | None = None, progress: bool = False
) -> Labels:
    """Box-prompted pseudo-labels: boxes from a detector file or from each slice's mask.

    A detector file's boxes are in the stored image's array indices (3D, or 2D on its in-plane
    axes; a frame's: its pixel rows and columns), per case; they are mapped onto the axial slices
    (`slice_boxes`). The segmenter is ``create_box_segmenter(cfg.segmenter, **cfg.segmenter_settings)``;
    it gets a colour frame's RGB (`SliceCase.colour`), a grey frame as it is, a volume's slices
    clipped to the window.
    """
    from medwss.pseudo.boxes import boxes_from_labels, boxes_to_labels, load_boxes
    from medwss.pseudo.protocol import PromptableSegmenter
    from medwss.pseudo.segmenters import create_box_segmenter

    kwargs: dict[str, object] = {"checkpoint": cfg.checkpoint} if cfg.segmenter in ("sam", "medsam") else {}
    settings = kwargs | cfg.segmenter_settings
    seg: PromptableSegmenter = create_box_segmenter(cfg.segmenter, **settings)  # type: ignore[assignment]
    lo, hi = cfg.window_range()

    def one(c: SliceCase) -> list[np.ndarray]:
        if boxes_file:
            per_slice = slice_boxes(load_boxes(boxes_file, case_id=c.case_id), c.geometry)
        elif c.gts is not None:
            per_slice = [boxes_from_labels(g, min_size=cfg.min_component) for g in c.gts]
        else:
            raise InvalidDataError(f"case {c.case_id}: give --boxes or a mask to derive boxes from")
        if c.colour is not None:
            images = c.colour
        else:
            images = c.raw if c.frame is not None else [np.clip(raw, lo, hi) for raw in c.raw]
        colour = c.colour is not None
        return [
            boxes_to_labels(im, bs, seg, cfg.box_threshold, cfg.ring, channels_last=colour, inside=cfg.inside)[0]
            for im, bs in zip(images, per_slice, strict=True)
        ]

    return per_case(cases, one, desc=f"box/{cfg.segmenter}", progress=progress)


def run_dhr(cases: Sequence[SliceCase], cams: Maps, cfg: DhrPseudoConfig) -> Labels:
    """Sinkhorn rebalancing of background+CAM scores with a uniform or organ-volume prior."""
    from medwss.pseudo.cams import with_background
    from medwss.pseudo.dhr import presence_prior, rebalance, slice_prior, uniform_prior

    k = len(cfg.classes())
    tags = slice_tags(cases, k)
    live = [cases[i] for i in _kept(cams)]
    dev = [c for c in live if c.split == "val" and c.gts is not None]  # the labelled dev split, else all non-test
    ref = [g for c in (dev or [c for c in live if c.split != "test" and c.gts is not None]) for g in c.gts]  # type: ignore[union-attr]
    presence = presence_prior(ref, k) if cfg.prior == "volume" else uniform_prior(k)
    return per_case(
        cases,
        lambda _c, cc, ts: [
            rebalance(with_background(m, cfg.cam_tau), slice_prior(presence, t), present=t, eps=cfg.eps)
            for m, t in zip(cc, ts, strict=True)
        ],
        cams,
        tags,
    )


def sweep(cases: Sequence[SliceCase], cams: Maps, cfg: FusePseudoConfig) -> dict[str, object]:
    """`threshold_sweep` of fusion on the ``val`` cases (all labelled cases if none is marked val)."""
    from medwss.pseudo.fusion import foreground_prior, threshold_sweep

    live = _kept(cams)
    idx = [i for i in live if cases[i].split == "val" and cases[i].gts is not None]
    idx = idx or [i for i in live if cases[i].gts is not None]
    if not idx:
        raise InvalidDataError("a threshold sweep needs labelled cases (mask column)")
    cam_l, gt_l, pr_l = [], [], []
    for i in idx:
        for k, raw in enumerate(cases[i].raw):
            cam_l.append(cams[i][k])  # type: ignore[index]
            gt_l.append(cases[i].gts[k])  # type: ignore[index]
            pr_l.append(foreground_prior(raw, cfg.foreground))
    res = threshold_sweep(cam_l, gt_l, pr_l, band=0.0)
    res["dev_cases"] = [cases[i].case_id for i in idx]
    return res


def run_fuse(cases: Sequence[SliceCase], cams: Maps, cfg: FusePseudoConfig) -> tuple[Labels, float]:
    """WSSS-BED fusion with the configured tau, or the tau a sweep on the val split picks."""
    from medwss.pseudo.fusion import foreground_prior, fuse

    tau = cfg.tau if cfg.tau is not None else float(sweep(cases, cams, cfg)["best_tau"])  # type: ignore[arg-type]
    labels = per_case(
        cases,
        lambda c, cc: [
            fuse(m, foreground_prior(raw, cfg.foreground), tau, cfg.band) for m, raw in zip(cc, c.raw, strict=True)
        ],
        cams,
    )
    return labels, tau


def run_par(cases: Sequence[SliceCase], cams: Maps, cfg: ParPseudoConfig) -> Labels:
    """PAR-refined CAMs (each rescaled to its original peak), thresholded like the baseline."""
    from medwss.pseudo.par import PAR, refine_cams

    par = PAR(dilations=(1, 2, 4), n_iter=cfg.par_iter)

    def one(c: SliceCase, cc: list[np.ndarray]) -> list[np.ndarray]:
        labs = []
        for img, m in zip(c.images, cc, strict=True):
            r = refine_cams(img[0], m, par)
            r = r * (m.max(axis=(1, 2)) / np.maximum(r.max(axis=(1, 2)), 1e-6))[:, None, None]  # keep each peak
            labs.append(cam_threshold_labels(r, cfg.cam_tau))
        return labs

    return per_case(cases, one, cams)


def run_cpal(cases: Sequence[SliceCase], cams: Maps, feats: Maps, cfg: CpalPseudoConfig) -> Labels:
    """CAM fused with context-prototype activation maps."""
    from medwss.pseudo.cpal import PrototypeBank, cpal_maps

    k1 = len(cfg.classes()) - 1
    ok = _kept(cams, feats)
    if not ok:
        raise InvalidDataError("no case is left to build context prototypes from")
    bank = PrototypeBank(k1, feats[ok[0]][0].shape[0], seed=cfg.seed)  # type: ignore[index]
    for i in ok:
        for m, f in zip(cams[i], feats[i], strict=True):  # type: ignore[arg-type]
            bank.update(f, m)
    protos = bank.context_prototypes(cfg.contexts, cfg.seed)
    return per_case(
        cases,
        lambda _c, cc, ff: [
            cam_threshold_labels(cpal_maps(f, m, protos, (m.max(axis=(1, 2)) > 0), cfg.top_k, cfg.alpha), cfg.cam_tau)
            for m, f in zip(cc, ff, strict=True)
        ],
        cams,
        feats,
    )


def sparse_labels(cases: Sequence[SliceCase], cfg: SparseLabelSettings) -> Labels:
    """Per case, its slices' sparse labels: the manifest's scribbles, else `cfg.weak` labels made from the mask."""
    options = {"n_points": 3} if cfg.weak == "point" else {}

    def sparse_of(c: SliceCase) -> list[np.ndarray]:
        if c.scribbles is not None:
            return c.scribbles
        if c.gts is not None:
            return weak_slices(c, cfg.weak, cfg.seed, **options)
        raise InvalidDataError(f"case {c.case_id} has neither a scribble nor a mask column")

    return per_case(cases, sparse_of)


def run_reach(cases: Sequence[SliceCase], cfg: ReachPseudoConfig) -> Labels:
    """The sparse labels with every pixel beyond `cfg.reach_mm` of the slice's foreground labels set to background."""
    from medwss.pseudo.agmm import within_reach

    def one(c: SliceCase, ss: list[np.ndarray]) -> list[np.ndarray]:
        return [within_reach(s, s, cfg.reach_mm, c.geometry.pixel_mm) for s in ss]

    return per_case(cases, one, sparse_labels(cases, cfg))


def run_agmm(
    cases: Sequence[SliceCase],
    cfg: AgmmPseudoConfig,
    offline: bool = False,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> Labels:
    """AGMM from sparse labels (manifest scribbles, or `make_weak_label` of kind `cfg.weak` from the masks).

    With `out_dir`, the network trains from and to ``out_dir/checkpoint.pt`` (resumed when present)
    and is saved as ``out_dir/model.pt`` (kind ``pseudo_agmm``).
    """
    from medwss.pseudo.agmm import gmm_refine, position_features, within_reach
    from medwss.pseudo.agmm_train import predict_labels, save_agmm_model, train_agmm

    k = len(cfg.classes())
    sparse = sparse_labels(cases, cfg)

    def gated(c: SliceCase, labels: list[np.ndarray], ss: list[np.ndarray]) -> list[np.ndarray]:
        if cfg.reach_mm is None:
            return labels
        px = c.geometry.pixel_mm
        return [within_reach(lab, s, cfg.reach_mm, px) for lab, s in zip(labels, ss, strict=True)]

    if offline:
        return per_case(
            cases,
            lambda c, ss: gated(c, [
                gmm_refine(position_features(im[0]), s, k, confidence=cfg.confidence, seed=cfg.seed, standardize=False)
                for im, s in zip(c.images, ss, strict=True)
            ], ss),
            sparse,
        )  # fmt: skip
    tags_per = slice_tags(cases, k)
    ok = _kept(sparse, tags_per)
    if not ok:
        raise InvalidDataError("no case is left to train on (each needs a scribble or a mask)")
    images = [im for i in ok for im in cases[i].images]
    tags = [t for i in ok for t in tags_per[i]]  # type: ignore[union-attr]
    out = None if out_dir is None else Path(out_dir)
    model, _ = train_agmm(
        images, [s for i in ok for s in sparse[i]], k, tags, cfg.iterations, seed=cfg.seed, progress=progress,  # type: ignore[union-attr]
        device=cfg.device, amp=cfg.amp, checkpoint=None if out is None else out / "checkpoint.pt",
    )  # fmt: skip
    if out is not None:
        save_agmm_model(out / "model.pt", model, _trained_meta(cfg))
    return per_case(
        cases, lambda c, ss, _t: gated(c, predict_labels(model, c.images, cfg.confidence), ss), sparse, tags_per
    )


def run_dupl(
    cases: Sequence[SliceCase],
    cams: Maps,
    cfg: DuplPseudoConfig,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> tuple[Labels, list[dict[str, float]]]:
    """Dual students trained from the CAM-threshold pseudo-labels.

    With `out_dir`, they train from and to ``out_dir/checkpoint.pt`` (resumed when present) and are
    saved as ``out_dir/model.pt`` (kind ``pseudo_dupl``).
    """
    from medwss.pseudo.dupl import DuPLConfig, dupl_labels, save_students, train_dupl

    k = len(cfg.classes())
    base = cam_baseline(cams, cfg)
    ok = _kept(base)
    if not ok:
        raise InvalidDataError("no case is left to train the students on")
    init = [lab for i in ok for lab in base[i]]  # type: ignore[union-attr]
    dcfg = DuPLConfig(
        iterations=cfg.iterations, warmup=cfg.iterations // 4, seed=cfg.seed, device=cfg.device, amp=cfg.amp
    )
    out = None if out_dir is None else Path(out_dir)
    images = [im for i in ok for im in cases[i].images]
    ckpt = None if out is None else out / "checkpoint.pt"
    students, history = train_dupl(images, init, k, dcfg, progress=progress, checkpoint=ckpt)
    if out is not None:
        save_students(out / "model.pt", students, _trained_meta(cfg))
    return per_case(cases, lambda c, _b: dupl_labels(students, c.images, cfg.confidence), base), history
