"""medwss's metrics against reference implementations used as development-only oracles.

- Surface metrics (`medwss.eval.overlap`): MONAI's ``compute_hausdorff_distance(percentile=95)``,
  ``compute_average_surface_distance`` and ``compute_surface_dice`` called directly, and a
  brute-force nearest-neighbour computation in millimetres (scipy's KD-tree), on the same
  anisotropic inputs.
- CAMELYON16 FROC (`medwss.eval.froc`): MONAI's ``compute_fp_tp_probs``, ``compute_froc_curve_data``
  and ``compute_froc_score``.
- PI-CAI lesion detection (`medwss.eval.lesions`, `medwss.eval.segmentation`): ``picai_eval``
  (AP, AUROC, ranking score, sensitivity at false positives per case) and its candidate
  extraction ``report_guided_annotation.extract_lesion_candidates``; skipped when not installed.

Where medwss keeps its own convention the test pins the difference.
"""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from medwss.eval.froc import froc
from medwss.eval.lesions import lesion_ap, lesion_candidates, match_lesions, sensitivity_at_fp
from medwss.eval.overlap import assd, hd95, nsd, surface_per_class
from medwss.eval.segmentation import evaluate_case, summarize

torch.set_num_threads(1)


# --- surface metrics ------------------------------------------------------------------------------
def _blobs(shape: tuple[int, ...], seed: int, n: int = 3) -> np.ndarray:
    """Union of random ellipsoids kept off the border (so every boundary convention agrees)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    out = np.zeros(shape, bool)
    for _ in range(n):
        centre = [rng.uniform(0.3 * s, 0.7 * s) for s in shape]
        radii = [rng.uniform(0.1 * s, 0.22 * s) for s in shape]
        out |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0
    return out


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _brute(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...], tol: float) -> tuple[float, float, float]:
    """HD95, ASSD and NSD from boundary voxels, distances by exhaustive nearest neighbour in mm."""
    pa = np.argwhere(_edges(a)) * np.asarray(spacing)
    pb = np.argwhere(_edges(b)) * np.asarray(spacing)
    d_ab, _ = cKDTree(pb).query(pa)
    d_ba, _ = cKDTree(pa).query(pb)
    h = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    both = np.r_[d_ab, d_ba]
    return float(h), float(both.mean()), float(np.mean(both <= tol))


def _monai(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...], tol: float) -> tuple[float, float, float]:
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    ya, yb = torch.as_tensor(a[None, None]), torch.as_tensor(b[None, None])
    sp = list(spacing)
    h = compute_hausdorff_distance(ya, yb, include_background=True, percentile=95, spacing=sp)
    s = compute_average_surface_distance(ya, yb, include_background=True, symmetric=True, spacing=sp)
    d = compute_surface_dice(ya, yb, [tol], include_background=True, spacing=sp)
    return float(h), float(s), float(d)


@pytest.mark.parametrize(
    ("shape", "spacing", "seed"),
    [((40, 36, 20), (0.8, 0.8, 3.0), 0), ((30, 30, 30), (1.0, 2.0, 0.5), 1), ((64, 48), (0.5, 1.25), 2)],
)
def test_surface_metrics_match_monai_and_brute_force(shape, spacing, seed):
    a, b = _blobs(shape, seed), _blobs(shape, seed + 100)
    tol = 2.0
    ours = (hd95(a, b, spacing), assd(a, b, spacing), nsd(a, b, tol, spacing))
    np.testing.assert_allclose(ours, _monai(a, b, spacing, tol), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, _brute(a, b, spacing, tol), rtol=1e-5, atol=1e-5)
    # spacing is per array axis: reversing it changes the result (unless isotropic)
    if len(set(spacing)) > 1:
        assert hd95(a, b, spacing[::-1]) != pytest.approx(ours[0])


def test_per_class_surface_metrics_match_monai_one_hot_with_ignore():
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    shape, spacing = (32, 32, 16), (0.7, 0.7, 2.5)
    gt = _blobs(shape, 3).astype(np.int64) + 2 * (_blobs(shape, 4) & ~_blobs(shape, 3))
    pred = _blobs(shape, 5).astype(np.int64) + 2 * (_blobs(shape, 6) & ~_blobs(shape, 5))
    pred[:, :, 0] = -1  # unlabelled in the prediction: left out of both maps
    keep = pred != -1
    ours_h = surface_per_class(pred, gt, 3, "hd95", spacing)
    ours_n = surface_per_class(pred, gt, 3, "nsd", spacing, tolerance=1.5)
    onehot = [torch.as_tensor(np.stack([(m == c) & keep for c in range(3)])[None]) for m in (pred, gt)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_h = compute_hausdorff_distance(*onehot, include_background=False, percentile=95, spacing=list(spacing))
        ref_n = compute_surface_dice(*onehot, [1.5, 1.5], include_background=False, spacing=list(spacing))
    np.testing.assert_allclose(ours_h, ref_h.numpy().ravel(), rtol=1e-5)
    np.testing.assert_allclose(ours_n, ref_n.numpy().ravel(), rtol=1e-5)


def test_empty_masks_pinned_against_monai():
    """MONAI returns NaN (with a warning) where a mask is empty; medwss's convention is fixed instead."""
    from monai.metrics import compute_hausdorff_distance

    a, empty = _blobs((20, 20, 10), 7), np.zeros((20, 20, 10), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_hausdorff_distance(torch.as_tensor(a[None, None]), torch.as_tensor(empty[None, None]))
    assert not np.isfinite(float(ref))  # MONAI: nan or inf
    assert hd95(a, empty) == np.inf and assd(a, empty) == np.inf and nsd(a, empty, 1.0) == 0.0
    assert hd95(empty, empty) == 0.0 and nsd(empty, empty, 1.0) == 1.0


def test_evaluate_reports_hd95_assd_nsd_with_spacing(tmp_path):
    from medwss.cli.main import main
    from medwss.io import save_nifti

    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    rows = []
    for i in range(3):
        gt = _blobs((28, 28, 10), 10 + i)
        prob = np.where(_blobs((28, 28, 10), 20 + i), 0.9, 0.05).astype(np.float32)
        if i == 2:
            prob[:] = 0.05  # empty prediction on a lesion case: infinite distance
        save_nifti(gt.astype(np.uint8), tmp_path / f"c{i}_mask.nii.gz", affine=affine)
        save_nifti(prob, tmp_path / "preds" / f"c{i}.nii.gz", affine=affine)
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "site": "s", "modality": "CT",
                     "image": f"c{i}_mask.nii.gz", "mask": f"c{i}_mask.nii.gz"})  # fmt: skip
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "eval"
    argv = ["evaluate", str(tmp_path / "m.csv"), "--predictions", str(tmp_path / "preds"), "--out", str(out)]
    assert main([*argv, "--nsd-tolerance", "1.5", "--n-boot", "20", "--quiet"]) == 0
    with open(out / "cases.csv", newline="") as fh:
        cases = list(csv.DictReader(fh))
    spacing = (0.8, 0.8, 3.0)
    for i, c in enumerate(cases[:2]):
        gt, pred = _blobs((28, 28, 10), 10 + i), _blobs((28, 28, 10), 20 + i)
        assert float(c["hd95"]) == pytest.approx(hd95(pred, gt, spacing), rel=1e-5)
        assert float(c["assd"]) == pytest.approx(assd(pred, gt, spacing), rel=1e-5)
        assert float(c["nsd"]) == pytest.approx(nsd(pred, gt, 1.5, spacing), rel=1e-5)
        assert float(c["nsd"]) == pytest.approx(_brute(pred, gt, spacing, 1.5)[2], rel=1e-5)
    assert cases[2]["hd95"] == "inf" and float(cases[2]["nsd"]) == 0.0
    overall = json.loads((out / "summary.json").read_text())["summary"][-1]
    assert overall["n_surface_inf"] == 1
    assert overall["hd95"] == pytest.approx(max(float(c["hd95"]) for c in cases[:2]))  # median of (a, b, inf)
    assert overall["nsd"] == pytest.approx(np.mean([float(c["nsd"]) for c in cases]))
    md = (out / "summary.md").read_text()
    assert "hd95" in md and "nsd" in md and "1.5 mm" in md


# --- CAMELYON16 FROC against MONAI ----------------------------------------------------------------
def _slides(seed: int, miss: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[set[int]]]:
    """Labelled lesion masks (level 1, so downsample 2) and detections in level-0 pixels."""
    rng = np.random.default_rng(seed)
    dets, masks, itcs = [], [], []
    for _ in range(4):
        mask = np.zeros((60, 80), np.int32)
        n = int(rng.integers(1, 4))
        for label in range(1, n + 1):
            r, c = 5 + 18 * (label - 1), int(rng.integers(5, 60))
            mask[r : r + 10, c : c + 12] = label
        points = []
        for label in range(1, n + 1):
            rows, cols = np.nonzero(mask == label)
            for _ in range(int(rng.integers(0 if miss else 1, 3))):
                j = int(rng.integers(len(rows)))
                points.append((2 * cols[j] + 1, 2 * rows[j] + 1, int(rng.integers(6, 33)) / 32))
        rows, cols = np.nonzero(mask == 0)
        for _ in range(int(rng.integers(1, 5))):
            j = int(rng.integers(len(rows)))
            points.append((2 * cols[j] + 1, 2 * rows[j] + 1, int(rng.integers(3, 29)) / 32))
        dets.append(np.asarray(points, np.float64).reshape(-1, 3))
        masks.append(mask)
        itcs.append({n} if n > 1 and rng.random() < 0.5 else set())
    return dets, masks, itcs


def _monai_froc(dets, masks, itcs) -> tuple[np.ndarray, np.ndarray, float]:
    from monai.metrics import compute_fp_tp_probs, compute_froc_curve_data, compute_froc_score

    fps, tps, n_targets = [], [], 0
    for d, m, itc in zip(dets, masks, itcs, strict=True):
        fp, tp, n = compute_fp_tp_probs(d[:, 2], d[:, 1], d[:, 0], m, list(itc), resolution_level=1)
        fps.append(fp)
        tps.append(tp)
        n_targets += n
    fp_all, tp_all = np.concatenate(fps), np.concatenate(tps)
    curve_fps, curve_sens = compute_froc_curve_data(fp_all, tp_all, n_targets, len(dets))
    return curve_fps, curve_sens, float(compute_froc_score(curve_fps, curve_sens))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_froc_matches_monai_when_a_lesion_is_missed(seed):
    dets, masks, itcs = _slides(seed, miss=True)
    ours = froc(dets, masks, 2.0, itcs)
    assert ours.sensitivity[-1] < 1.0  # some lesion missed: the case in which the two agree
    curve_fps, curve_sens, score = _monai_froc(dets, masks, itcs)
    assert ours.score == pytest.approx(score, abs=1e-9)
    # same operating points: MONAI lists them from the lowest threshold up, and ends at (0, 0)
    ref = sorted(set(zip(np.round(curve_fps, 9), np.round(curve_sens, 9), strict=True)))
    mine = sorted(set(zip(np.round(ours.fps_per_slide, 9), np.round(ours.sensitivity, 9), strict=True)))
    assert mine == ref


def test_froc_convention_difference_when_every_lesion_is_found_is_pinned():
    """MONAI (like the official script) drops the lowest threshold; medwss keeps that operating point."""
    for seed in range(20):
        dets, masks, itcs = _slides(seed, miss=False)
        ours = froc(dets, masks, 2.0, itcs)
        if ours.sensitivity[-1] == 1.0:
            break
    _, _, score = _monai_froc(dets, masks, itcs)
    lowest = ours.thresholds[-1]
    dropped = [d[d[:, 2] > lowest] for d in dets]  # medwss without the lowest threshold's detections
    assert froc(dropped, masks, 2.0, itcs).score == pytest.approx(score, abs=1e-9)
    assert ours.score >= score


# --- PI-CAI detection metrics against picai_eval --------------------------------------------------
def _picai_cases(seed: int, n: int = 8) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """3D probability maps of separated Gaussian blobs; lesions are spheres at some of them."""
    rng = np.random.default_rng(seed)
    shape = (24, 24, 12)
    grid = np.indices(shape).astype(np.float64)
    probs, gts = [], []
    slots = [(6, 6, 4), (6, 18, 8), (18, 6, 8), (18, 18, 4)]
    for i in range(n):
        p = np.zeros(shape)
        g = np.zeros(shape, np.uint8)
        for centre in slots:
            d2 = sum((gr - c) ** 2 for gr, c in zip(grid, centre, strict=True))
            kind = rng.integers(3)  # 0 nothing, 1 lesion (maybe detected), 2 false positive blob
            if kind == 1 and i % 3:
                g[d2 <= 4.0] = 1
                if rng.random() < 0.75:
                    p = np.maximum(p, rng.uniform(0.3, 0.95) * np.exp(-d2 / 4.0))
            elif kind == 2:
                p = np.maximum(p, rng.uniform(0.2, 0.9) * np.exp(-d2 / 3.0))
        p[p < 0.02] = 0.0  # blobs stay apart
        probs.append(p)
        gts.append(g)
    return probs, gts


def _detection_map(prob: np.ndarray, **kw) -> np.ndarray:
    labels, conf = lesion_candidates(prob, connectivity=3, **kw)
    return np.r_[0.0, conf][labels]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesion_metrics_match_picai_eval(seed):
    picai = pytest.importorskip("picai_eval")
    probs, gts = _picai_cases(seed)
    rows = [evaluate_case(p, g, connectivity=3, surface=False, max_lesions=5) for p, g in zip(probs, gts, strict=True)]
    summary = summarize(rows, n_boot=0, fp_rates=(0.5, 1.0, 2.0))[-1]
    dmaps = [_detection_map(p, max_lesions=5) for p in probs]
    for allow in (True, False):  # no two candidates hit one lesion here, so both settings agree
        m = picai.evaluate(
            y_det=dmaps, y_true=gts, num_parallel_calls=1, allow_unmatched_candidates_with_minimal_overlap=allow
        )
        assert summary["ap"] == pytest.approx(m.AP, abs=1e-9)
        assert summary["auroc"] == pytest.approx(m.auroc, abs=1e-9)
        assert summary["ranking"] == pytest.approx(m.score, abs=1e-9)
        assert summary["n_lesions"] == m.num_lesions
    dets = [d for r in rows for d in r["detections"]]
    n_gt = sum(r["n_gt_lesions"] for r in rows)
    assert n_gt > sum(t for _, t in dets)  # some lesion missed: the lowest-threshold convention does not matter
    ours = sensitivity_at_fp(dets, n_gt, len(rows), (0.25, 0.5, 1.0, 2.0))
    for rate, sens in ours.items():
        assert sens == pytest.approx(m.lesion_TPR_at_FPR(rate), abs=1e-9)


def test_candidate_extraction_matches_picai_dynamic_extraction():
    pytest.importorskip("report_guided_annotation")
    from report_guided_annotation import extract_lesion_candidates

    for seed in range(3):
        for p in _picai_cases(seed)[0]:
            ref, _, _ = extract_lesion_candidates(
                p, threshold="dynamic", num_lesions_to_extract=5, min_voxels_detection=0
            )
            # PI-CAI drops candidates of <= min_voxels_detection voxels; medwss those of < min_voxels
            np.testing.assert_allclose(_detection_map(p, max_lesions=5, min_voxels=1), ref, atol=1e-12)
    # without PI-CAI's removal of adjacent regions, the rim left around a peak becomes a candidate
    p = _picai_cases(0)[0][1]
    assert len(lesion_candidates(p, remove_adjacent=False)[1]) > len(lesion_candidates(p)[1])


def test_picai_conventions_that_medwss_does_not_share_are_pinned():
    pytest.importorskip("picai_eval")
    from picai_eval.eval import evaluate_case as picai_case
    from picai_eval.metrics import Metrics

    gt = np.zeros((20, 20, 4), np.uint8)
    gt[2:12, 2:12, 1] = 1  # one lesion, 100 voxels
    # (a) two candidates each hitting the lesion: medwss counts the second as a false positive, as
    # picai_eval with allow_unmatched_candidates_with_minimal_overlap=False; picai's default ignores it
    cand = np.zeros(gt.shape, np.int32)
    cand[2:12, 2:7, 1], cand[2:12, 7:12, 1] = 1, 2
    dets, n_gt = match_lesions(cand, [0.875, 0.625], gt, connectivity=3)
    assert dets == [(0.875, True), (0.625, False)]
    dmap = np.r_[0.0, 0.875, 0.625][cand]
    dmap[2:12, 7, 1] = 0  # picai re-labels the map: keep the two candidates apart
    cand[2:12, 7, 1] = 0
    dets, _ = match_lesions(cand, [0.875, 0.625], gt, connectivity=3)
    strict = picai_case(dmap, gt, allow_unmatched_candidates_with_minimal_overlap=False)[0]
    default = picai_case(dmap, gt)[0]
    assert sorted((c, bool(t)) for t, c, _ in strict) == sorted(dets)
    assert sorted((c, bool(t)) for t, c, _ in default) == [(0.875, True)]  # the second hit is dropped
    # (b) IoU exactly at the threshold: picai_eval hits at IoU >= 0.1, medwss needs IoU > 0.1
    cand = np.zeros(gt.shape, np.int32)
    cand[2:12, 2, 1] = 1  # 10 voxels inside the lesion: IoU = 10 / 100
    assert match_lesions(cand, [0.8], gt)[0] == [(0.8, False)]
    assert picai_case(np.r_[0.0, 0.75][cand], gt)[0] == [(1, 0.75, pytest.approx(0.1))]
    # (c) connectivity: picai_eval joins diagonal voxels (26-neighbourhood); medwss's default joins faces
    diag = np.zeros((6, 6, 6), np.uint8)
    diag[1, 1, 1] = diag[2, 2, 2] = 1
    assert match_lesions(np.zeros(diag.shape, np.int32), [], diag)[1] == 2
    assert match_lesions(np.zeros(diag.shape, np.int32), [], diag, connectivity=3)[1] == 1
    # (d) with every lesion found, picai_eval drops the lowest threshold's operating point
    dets = [(0.9, True), (0.4, True), (0.6, False)]
    m = Metrics(
        lesion_results={0: [(1, 0.9, 0.5), (0, 0.6, 0.0)], 1: [(1, 0.4, 0.5)]},
        case_target={0: 1, 1: 1},
        case_pred={0: 0.9, 1: 0.4},
    )
    assert sensitivity_at_fp(dets, 2, 2, (1.0,))[1.0] == 1.0
    assert m.lesion_TPR_at_FPR(1.0) == 0.5
    assert lesion_ap(dets, 2) == pytest.approx(m.AP)  # AP is unaffected
