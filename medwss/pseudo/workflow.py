"""Manifest-level pipelines behind `medwss pseudo ...`: one function per method, plus writing and evaluation.

Every method takes sliced cases (`SliceCase`) and a `PseudoConfig` and returns, per case, a list of
per-slice pseudo-label maps (int64, `IGNORE` = -1). `write_outputs` pastes them back onto the source
grid (the case's `SliceGeometry`) and writes int16 NIfTI with PNG previews and, where masks exist,
metrics CSV/JSON. Weak labels derived from the masks come from `medwss.data.weak.make_weak_label`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medwss.data.weak import make_weak_label, tags_of
from medwss.errors import InvalidDataError, MedwssError
from medwss.pseudo.cams import cam_threshold_labels, cams_and_features, train_cam_model
from medwss.pseudo.config import PseudoConfig
from medwss.pseudo.volumes import SliceCase, slice_boxes, slice_case

Labels = list[list[np.ndarray]]


def load_cases(manifest: Iterable[Any], cfg: PseudoConfig, progress: bool = False) -> tuple[list[SliceCase], list[str]]:
    """Slice every case; a case that fails to load is skipped and reported as ``"case_id: reason"``."""
    cases, failed = [], []
    for case in tqdm(list(manifest), desc="load", disable=not progress):
        try:
            cases.append(slice_case(case, cfg))
        except (MedwssError, ValueError) as exc:
            failed.append(f"{case.case_id}: {exc}")
    return cases, failed


def slice_tags(cases: Sequence[SliceCase], n_classes: int) -> list[list[np.ndarray]]:
    """Per case and slice, (K,) class presence from the masks (the image-level labels)."""
    out = []
    for c in cases:
        if c.gts is None:
            raise InvalidDataError(f"case {c.case_id} has no mask: slice tags (image labels) come from the mask column")
        out.append([tags_of(g, n_classes) for g in c.gts])
    return out


def weak_slices(c: SliceCase, kind: str, seed: int, **options: Any) -> list[np.ndarray]:
    """Per slice of a case, `make_weak_label` of its mask (seed ``seed + canonical slice index``)."""
    if c.gts is None:
        raise InvalidDataError(f"case {c.case_id} has no mask: {kind} labels are derived from the mask column")
    return [make_weak_label(g, kind, seed + k, **options) for g, k in zip(c.gts, c.geometry.indices, strict=True)]


def case_points(cases: Sequence[SliceCase], cfg: PseudoConfig) -> list[list[np.ndarray]]:
    """Per case and slice, point labels (3 clicks per component, background marks) derived from the masks."""
    return [weak_slices(c, "point", cfg.seed, n_points=3) for c in cases]


def _trained_meta(cfg: PseudoConfig) -> dict[str, Any]:
    return {"classes": cfg.classes(), "train_config": cfg.model_dump(mode="json")}


def compute_cams(
    cases: Sequence[SliceCase],
    cfg: PseudoConfig,
    progress: bool = False,
    out_dir: str | Path | None = None,
    prefix: str = "",
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
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
        stats = point_stats([r for c in cases for r in c.raw], [p for ps in pts for p in ps], k)
        cams = [
            [point_cams(r, p, k, stats, cfg.point_sigma * c.scale) for r, p in zip(c.raw, ps, strict=True)]
            for c, ps in zip(cases, pts, strict=True)
        ]
        feats = [[position_features(im[0]).astype(np.float32) for im in c.images] for c in cases]
        return cams, feats
    images = [im for c in cases for im in c.images]
    gts = [g for c in cases for g in c.gts]  # type: ignore[union-attr]
    out = None if out_dir is None else Path(out_dir)
    model = train_cam_model(
        images, gts, k, cfg.cam_epochs, cfg.cam_crop, width=cfg.cam_width, seed=cfg.seed, progress=progress,
        device=cfg.device, amp=cfg.amp, checkpoint=None if out is None else out / f"{prefix}checkpoint.pt",
    )  # fmt: skip
    if out is not None:
        from medwss.pseudo.cams import save_cam_model

        save_cam_model(out / f"{prefix}model.pt", model, _trained_meta(cfg))
    cams, feats = [], []
    for c, ts in zip(cases, tags, strict=True):
        cc, ff = cams_and_features(model, c.images)
        cams.append([m * t[1:, None, None] for m, t in zip(cc, ts, strict=True)])
        feats.append(ff)
    return cams, feats


def cam_baseline(cams: list[list[np.ndarray]], cfg: PseudoConfig) -> Labels:
    """The plain activation-map threshold."""
    return [[cam_threshold_labels(m, cfg.cam_tau) for m in cc] for cc in cams]


def run_box(
    cases: Sequence[SliceCase], cfg: PseudoConfig, boxes_file: str | None = None, progress: bool = False
) -> Labels:
    """Box-prompted pseudo-labels: boxes from a detector file or from each slice's mask.

    A detector file's boxes are in the stored image's array indices (3D, or 2D on its in-plane
    axes), per case; they are mapped onto the axial slices (`slice_boxes`).
    """
    from medwss.pseudo.boxes import boxes_from_labels, boxes_to_labels, load_boxes
    from medwss.pseudo.segmenters import create_box_segmenter

    kwargs: dict[str, object] = {"checkpoint": cfg.checkpoint} if cfg.segmenter in ("sam", "medsam") else {}
    seg = create_box_segmenter(cfg.segmenter, **kwargs)
    lo, hi = cfg.window_range()
    out: Labels = []
    for c in tqdm(cases, desc=f"box/{cfg.segmenter}", leave=False, disable=not progress):
        if boxes_file:
            per_slice = slice_boxes(load_boxes(boxes_file, case_id=c.case_id), c.geometry)
        elif c.gts is not None:
            per_slice = [boxes_from_labels(g, min_size=2) for g in c.gts]
        else:
            raise InvalidDataError(f"case {c.case_id}: give --boxes or a mask to derive boxes from")
        out.append(
            [
                boxes_to_labels(np.clip(raw, lo, hi), bs, seg, cfg.box_threshold, cfg.ring)[0]  # type: ignore[arg-type]
                for raw, bs in zip(c.raw, per_slice, strict=True)
            ]
        )
    return out


def run_dhr(cases: Sequence[SliceCase], cams: list[list[np.ndarray]], cfg: PseudoConfig) -> Labels:
    """Sinkhorn rebalancing of background+CAM scores with a uniform or organ-volume prior."""
    from medwss.pseudo.cams import with_background
    from medwss.pseudo.dhr import presence_prior, rebalance, slice_prior, uniform_prior

    k = len(cfg.classes())
    tags = slice_tags(cases, k)
    dev = [c for c in cases if c.split == "val" and c.gts is not None]  # the labelled dev split, else all non-test
    ref = [g for c in (dev or [c for c in cases if c.split != "test" and c.gts is not None]) for g in c.gts]  # type: ignore[union-attr]
    presence = presence_prior(ref, k) if cfg.prior == "volume" else uniform_prior(k)
    return [
        [
            rebalance(with_background(m, cfg.cam_tau), slice_prior(presence, t), present=t, eps=cfg.eps)
            for m, t in zip(cc, ts, strict=True)
        ]
        for cc, ts in zip(cams, tags, strict=True)
    ]


def sweep(cases: Sequence[SliceCase], cams: list[list[np.ndarray]], cfg: PseudoConfig) -> dict[str, object]:
    """`threshold_sweep` of fusion on the ``val`` cases (all labelled cases if none is marked val)."""
    from medwss.pseudo.fusion import foreground_prior, threshold_sweep

    idx = [i for i, c in enumerate(cases) if c.split == "val" and c.gts is not None]
    idx = idx or [i for i, c in enumerate(cases) if c.gts is not None]
    if not idx:
        raise InvalidDataError("a threshold sweep needs labelled cases (mask column)")
    cam_l, gt_l, pr_l = [], [], []
    for i in idx:
        for k, raw in enumerate(cases[i].raw):
            cam_l.append(cams[i][k])
            gt_l.append(cases[i].gts[k])  # type: ignore[index]
            pr_l.append(foreground_prior(raw, cfg.foreground))
    res = threshold_sweep(cam_l, gt_l, pr_l, band=0.0)
    res["dev_cases"] = [cases[i].case_id for i in idx]
    return res


def run_fuse(cases: Sequence[SliceCase], cams: list[list[np.ndarray]], cfg: PseudoConfig) -> tuple[Labels, float]:
    """WSSS-BED fusion with the configured tau, or the tau a sweep on the val split picks."""
    from medwss.pseudo.fusion import foreground_prior, fuse

    tau = cfg.tau if cfg.tau is not None else float(sweep(cases, cams, cfg)["best_tau"])  # type: ignore[arg-type]
    labels = [
        [fuse(m, foreground_prior(raw, cfg.foreground), tau, cfg.band) for m, raw in zip(cc, c.raw, strict=True)]
        for cc, c in zip(cams, cases, strict=True)
    ]
    return labels, tau


def run_par(cases: Sequence[SliceCase], cams: list[list[np.ndarray]], cfg: PseudoConfig) -> Labels:
    """PAR-refined CAMs (each rescaled to its original peak), thresholded like the baseline."""
    from medwss.pseudo.par import PAR, refine_cams

    par = PAR(dilations=(1, 2, 4), n_iter=cfg.par_iter)
    out = []
    for c, cc in zip(cases, cams, strict=True):
        labs = []
        for img, m in zip(c.images, cc, strict=True):
            r = refine_cams(img[0], m, par)
            r = r * (m.max(axis=(1, 2)) / np.maximum(r.max(axis=(1, 2)), 1e-6))[:, None, None]  # keep each peak
            labs.append(cam_threshold_labels(r, cfg.cam_tau))
        out.append(labs)
    return out


def run_cpal(
    cases: Sequence[SliceCase], cams: list[list[np.ndarray]], feats: list[list[np.ndarray]], cfg: PseudoConfig
) -> Labels:
    """CAM fused with context-prototype activation maps."""
    from medwss.pseudo.cpal import PrototypeBank, cpal_maps

    k1 = len(cfg.classes()) - 1
    bank = PrototypeBank(k1, feats[0][0].shape[0], seed=cfg.seed)
    for cc, ff in zip(cams, feats, strict=True):
        for m, f in zip(cc, ff, strict=True):
            bank.update(f, m)
    protos = bank.context_prototypes(cfg.contexts, cfg.seed)
    return [
        [
            cam_threshold_labels(cpal_maps(f, m, protos, (m.max(axis=(1, 2)) > 0), cfg.top_k, cfg.alpha), cfg.cam_tau)
            for m, f in zip(cc, ff, strict=True)
        ]
        for cc, ff in zip(cams, feats, strict=True)
    ]


def run_agmm(
    cases: Sequence[SliceCase],
    cfg: PseudoConfig,
    offline: bool = False,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> Labels:
    """AGMM from sparse labels (manifest scribbles, or `make_weak_label` of kind `cfg.weak` from the masks).

    With `out_dir`, the network trains from and to ``out_dir/checkpoint.pt`` (resumed when present)
    and is saved as ``out_dir/model.pt`` (kind ``pseudo_agmm``).
    """
    from medwss.pseudo.agmm import gmm_refine, position_features
    from medwss.pseudo.agmm_train import predict_labels, save_agmm_model, train_agmm

    k = len(cfg.classes())
    options = {"n_points": 3} if cfg.weak == "point" else {}
    sparse = []
    for c in cases:
        if c.scribbles is not None:
            sparse.append(c.scribbles)
        elif c.gts is not None:
            sparse.append(weak_slices(c, cfg.weak, cfg.seed, **options))
        else:
            raise InvalidDataError(f"case {c.case_id} has neither a scribble nor a mask column")
    if offline:
        return [
            [
                gmm_refine(position_features(im[0]), s, k, confidence=cfg.confidence, seed=cfg.seed, standardize=False)
                for im, s in zip(c.images, ss, strict=True)
            ]
            for c, ss in zip(cases, sparse, strict=True)
        ]
    images = [im for c in cases for im in c.images]
    tags = [t for ts in slice_tags(cases, k) for t in ts]
    out = None if out_dir is None else Path(out_dir)
    model, _ = train_agmm(
        images, [s for ss in sparse for s in ss], k, tags, cfg.iterations, seed=cfg.seed, progress=progress,
        device=cfg.device, amp=cfg.amp, checkpoint=None if out is None else out / "checkpoint.pt",
    )  # fmt: skip
    if out is not None:
        save_agmm_model(out / "model.pt", model, _trained_meta(cfg))
    return [predict_labels(model, c.images, cfg.confidence) for c in cases]


def run_dupl(
    cases: Sequence[SliceCase],
    cams: list[list[np.ndarray]],
    cfg: PseudoConfig,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> tuple[Labels, list[dict[str, float]]]:
    """Dual students trained from the CAM-threshold pseudo-labels.

    With `out_dir`, they train from and to ``out_dir/checkpoint.pt`` (resumed when present) and are
    saved as ``out_dir/model.pt`` (kind ``pseudo_dupl``).
    """
    from medwss.pseudo.dupl import DuPLConfig, dupl_labels, save_students, train_dupl

    k = len(cfg.classes())
    init = [lab for labs in cam_baseline(cams, cfg) for lab in labs]
    dcfg = DuPLConfig(
        iterations=cfg.iterations, warmup=cfg.iterations // 4, seed=cfg.seed, device=cfg.device, amp=cfg.amp
    )
    out = None if out_dir is None else Path(out_dir)
    images = [im for c in cases for im in c.images]
    ckpt = None if out is None else out / "checkpoint.pt"
    students, history = train_dupl(images, init, k, dcfg, progress=progress, checkpoint=ckpt)
    if out is not None:
        save_students(out / "model.pt", students, _trained_meta(cfg))
    return [dupl_labels(students, c.images, cfg.confidence) for c in cases], history
