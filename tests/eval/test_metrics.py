"""Metrics (AUC, bootstrap, report, Dice, FROC, peak detection) and dense heatmaps from instance scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.eval.froc import camelyon_lesions, detections_from_heatmap, froc
from medwss.eval.heatmap import bag_heatmap, heatmap_shape, rasterize_gt, resample_mask, slide_heatmap, volume_heatmap
from medwss.eval.metrics import (
    bootstrap_ci,
    classification_report,
    dice,
    heatmap_dice,
    mean_ci,
    paired_mean_ci,
    roc_auc,
    roc_curve,
)
from medwss.io.annotations import write_geojson


def _separable(n: int, seed: int = 0, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, dtype=int), np.ones(n - n // 2, dtype=int)]
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + shift * (2 * y - 1))))
    return y, p


# --- AUC ------------------------------------------------------------------------------------------
def test_auc_of_perfect_and_reversed_and_tied_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.3, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.7, 0.2, 0.1]) == 0.0
    assert roc_auc(y, np.full(5, 0.5)) == 0.5
    # one positive above both negatives, one tied with one negative: (2 + 1.5) / 4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.9, 0.5]) == pytest.approx(0.875)


def test_auc_matches_scikit_learn_including_multiclass() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y, p = _separable(120)
    assert roc_auc(y, np.round(p, 1)) == pytest.approx(roc_auc_score(y, np.round(p, 1)))
    y3 = rng.integers(0, 3, 150)
    p3 = rng.random((150, 3))
    p3[np.arange(150), y3] += 0.4
    p3 /= p3.sum(axis=1, keepdims=True)
    assert roc_auc(y3, p3) == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr", average="macro"))
    assert roc_auc(y3, np.eye(3)[y3]) == 1.0


def test_auc_rejects_one_class_and_bad_input() -> None:
    with pytest.raises(ValueError, match="both"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])


def test_roc_curve_points() -> None:
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert np.allclose(fpr, [0, 0, 0.5, 0.5, 1])
    assert np.allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf and np.allclose(thr[1:], [0.8, 0.4, 0.35, 0.1])


# --- bootstrap ------------------------------------------------------------------------------------
def test_bootstrap_ci_contains_estimate_is_deterministic_and_narrows_with_n() -> None:
    y, p = _separable(60)
    est, lo, hi = bootstrap_ci(roc_auc, y, p, n_boot=300, seed=3)
    assert lo <= est <= hi
    assert (est, lo, hi) == bootstrap_ci(roc_auc, y, p, n_boot=300, seed=3)
    assert (lo, hi) != bootstrap_ci(roc_auc, y, p, n_boot=300, seed=4)[1:]
    y_big, p_big = _separable(1200)
    _, lo_big, hi_big = bootstrap_ci(roc_auc, y_big, p_big, n_boot=300, seed=3)
    assert hi_big - lo_big < (hi - lo) / 2


def test_bootstrap_of_perfect_separation_is_one() -> None:
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    assert bootstrap_ci(roc_auc, y, y * 0.8 + 0.1, n_boot=100) == (1.0, 1.0, 1.0)


def test_bootstrap_skips_degenerate_resamples() -> None:
    y = np.array([0] * 9 + [1])  # unstratified resamples often miss the only positive
    p = np.linspace(0, 1, 10)
    est, lo, hi = bootstrap_ci(roc_auc, y, p, n_boot=200, stratify=False)
    assert est == 1.0 and lo == 1.0 and hi == 1.0
    with pytest.raises(ValueError):
        bootstrap_ci(roc_auc, np.zeros(5, dtype=int), p[:5])


def test_classification_report_binary() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    r = classification_report(y, p, n_boot=200)
    assert r["n"] == 8 and r["n_pos"] == 4 and r["n_neg"] == 4
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["sensitivity"] == pytest.approx(3 / 4)
    assert r["specificity"] == pytest.approx(3 / 4)
    assert r["balanced_accuracy"] == pytest.approx(3 / 4)
    assert r["auc"] == pytest.approx(15 / 16)
    assert r["auc_lo"] <= r["auc"] <= r["auc_hi"]
    one_class = classification_report(np.ones(4, dtype=int), np.full(4, 0.9), n_boot=10)
    assert np.isnan(one_class["auc"]) and one_class["sensitivity"] == 1.0 and np.isnan(one_class["specificity"])


def test_classification_report_multiclass() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.eye(3)[[0, 1, 1, 1, 2, 2]] * 0.8 + 0.1  # one class-0 case called class 1
    r = classification_report(y, p, n_boot=50)
    assert r["n_classes"] == 3
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert r["sensitivity"] == pytest.approx(r["balanced_accuracy"])
    assert r["specificity"] == pytest.approx((1 + 3 / 4 + 1) / 3)


# --- overlap --------------------------------------------------------------------------------------
def test_dice_known_values() -> None:
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :4] = True  # 40 px
    b[:, 2:8] = True  # 60 px, overlap 20
    assert dice(a, b) == pytest.approx(2 * 20 / 100)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        dice(a, b[:5])


def test_heatmap_dice_thresholds_and_ignores_nan() -> None:
    heat = np.array([[0.9, 0.6, 0.2], [np.nan, 0.5, 0.1]])
    gt = np.array([[1, 1, 0], [1, 0, 0]])
    assert heatmap_dice(heat, gt) == pytest.approx(2 * 2 / (3 + 3))  # pred {0.9, 0.6, 0.5}, hits 2
    assert heatmap_dice(heat, gt, threshold=0.8) == pytest.approx(2 * 1 / (1 + 3))


# --- detection --------------------------------------------------------------------------------------
def test_detections_from_heatmap_finds_planted_peaks() -> None:
    heat = np.zeros((40, 50))
    yy, xx = np.mgrid[0:40, 0:50]
    for r, c, v in [(10, 12, 0.9), (30, 40, 0.7), (11, 14, 0.6)]:  # the third sits on the first's slope
        heat = np.maximum(heat, v * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8))
    heat[0, 0] = np.nan
    det = detections_from_heatmap(heat, downsample=16, threshold=0.3, min_distance=3)
    assert det.shape == (2, 3)
    assert np.allclose(det[0], [(12 + 0.5) * 16, (10 + 0.5) * 16, 0.9])
    assert np.allclose(det[1], [(40 + 0.5) * 16, (30 + 0.5) * 16, 0.7])
    # a plateau gives one detection, and nothing passes a high threshold
    flat = np.zeros((10, 10))
    flat[4:6, 4:6] = 0.8
    assert len(detections_from_heatmap(flat, 1, 0.5, 2)) == 1
    assert detections_from_heatmap(heat, 16, 0.95, 3).shape == (0, 3)


def _two_lesions() -> np.ndarray:
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:6, 2:6] = 1
    labels[12:18, 10:16] = 2
    return labels


def test_froc_hand_built_case() -> None:
    ds = 8.0

    def at(r: float, c: float) -> tuple[float, float]:  # level-0 point inside mask pixel (r, c)
        return (c + 0.5) * ds, (r + 0.5) * ds

    tumour_slide = np.array(
        [
            [*at(3, 3), 0.9],  # lesion 1
            [*at(4, 4), 0.6],  # lesion 1 again: neither a hit nor a false positive
            [*at(10, 2), 0.8],  # background: FP
            [*at(15, 12), 0.3],  # lesion 2
            [*at(0, 19), 0.2],  # background: FP
        ]
    )
    normal_slide = np.array([[100.0, 100.0, 0.7], [50.0, 20.0, 0.1]])  # both FPs
    result = froc([tumour_slide, normal_slide], [_two_lesions(), None], ds)
    assert result.n_lesions == 2 and result.n_slides == 2
    # thresholds inf, .9, .8, .7, .3, .2, .1
    assert np.allclose(result.fps_per_slide, [0, 0, 0.5, 1, 1, 1.5, 2])
    assert np.allclose(result.sensitivity, [0, 0.5, 0.5, 0.5, 1, 1, 1])
    assert np.allclose(result.sensitivities, [0.5, 0.5, 1, 1, 1, 1])
    assert result.score == pytest.approx(5 / 6)
    assert result.as_dict()["sens@0.25fp"] == 0.5
    # a binary mask is labelled into the same two lesions
    assert froc([tumour_slide, normal_slide], [_two_lesions() > 0, None], ds).score == pytest.approx(5 / 6)
    # ignoring lesion 2 (an ITC) leaves one lesion, found at 0 FPs
    ignored = froc([tumour_slide, normal_slide], [_two_lesions(), None], ds, ignore_labels=[{2}, set()])
    assert ignored.n_lesions == 1 and ignored.score == 1.0


def test_froc_interpolates_between_points() -> None:
    labels = _two_lesions()
    det = np.array([[3.5 * 4, 3.5 * 4, 0.9], [0.5, 150.0, 0.8], [13 * 4, 15 * 4, 0.7]])  # ds 4
    r = froc([det], [labels], 4.0, fp_rates=[0.5, 1.0])
    # curve (0, 0), (0, .5), (1, .5), (1, 1): at 0.5 FP half-way between (0, .5) and (1, .5)
    assert np.allclose(r.sensitivities, [0.5, 1.0])


def test_camelyon_lesions_dilates_and_flags_small_lesions() -> None:
    mask = np.zeros((200, 200), bool)
    mask[20:120, 20:120] = True  # 100 px × 2 µm = 200 µm side: a macro lesion once dilated
    mask[160:163, 160:163] = True  # 6 µm: isolated tumour cells
    labels, itc = camelyon_lesions(mask, downsample=4, mpp=0.5)
    assert labels.max() == 2
    big = labels[70, 70]
    assert big not in itc and labels[162, 162] in itc
    assert labels[19, 70] == big  # grown by 37.5 µm = 18.75 px
    assert labels[0, 70] == 0


# --- heatmaps -------------------------------------------------------------------------------------
def test_slide_heatmap_paints_tiles_at_their_place() -> None:
    ds, span = 16, 256
    dims = (1000, 700)  # level-0 (W, H)
    coords = np.array([[0, 0], [256, 512], [512, 0]])
    heat = slide_heatmap(np.array([0.2, 0.9, 0.5]), coords, span, dims, ds)
    assert heat.shape == heatmap_shape(dims, ds) == (44, 63)
    assert heat.dtype == np.float32
    for (x, y), v in zip(coords, [0.2, 0.9, 0.5], strict=True):
        block = heat[y // ds : (y + span) // ds, x // ds : (x + span) // ds]
        assert np.allclose(block, v)
    assert heat[32:44, 16:32].shape == (12, 16)  # the second tile runs past the slide's bottom edge
    assert np.isnan(heat[20, 40]) and np.isnan(heat[:, 48:]).all()
    assert np.isfinite(heat).sum() == 16 * 16 + 12 * 16 + 16 * 16
    zero = slide_heatmap([0.2], [[0, 0]], span, dims, ds, fill=0.0)
    assert zero[30, 30] == 0.0


def test_slide_heatmap_averages_overlaps_and_handles_unaligned_tiles() -> None:
    heat = slide_heatmap([1.0, 0.0], [[0, 0], [128, 0]], 256, (512, 256), 64)
    assert np.allclose(heat[0], [1.0, 1.0, 0.5, 0.5, 0.0, 0.0, np.nan, np.nan][: heat.shape[1]], equal_nan=True)
    # a tile covering half of a pixel still paints it, with its own value
    half = slide_heatmap([0.4], [[32, 32]], 64, (128, 128), 64)
    assert np.allclose(half, 0.4)


def test_slide_heatmap_equals_level0_painting_averaged_by_area() -> None:
    rng = np.random.default_rng(5)
    dims, span, ds = (300, 200), 37, 8
    coords = rng.integers(-20, 290, (25, 2))
    scores = rng.random(25)
    num, den = np.zeros((200, 300)), np.zeros((200, 300))  # brute force on level 0
    for (x, y), s in zip(coords, scores, strict=True):
        num[max(y, 0) : y + span, max(x, 0) : x + span] += s
        den[max(y, 0) : y + span, max(x, 0) : x + span] += 1
    pad = ((0, 200 % ds and ds - 200 % ds), (0, 300 % ds and ds - 300 % ds))
    blocks = [np.pad(a, pad).reshape(25, ds, 38, ds).sum(axis=(1, 3)) for a in (num, den)]
    expected = np.where(blocks[1] > 0, blocks[0] / np.maximum(blocks[1], 1e-12), np.nan)
    assert np.allclose(slide_heatmap(scores, coords, span, dims, ds), expected, equal_nan=True, atol=1e-6)


def test_volume_heatmap_round_trip() -> None:
    rng = np.random.default_rng(0)
    shape, size = (12, 8, 6), (4, 4, 2)
    grid = np.stack(np.meshgrid(*(np.arange(0, s, p) for s, p in zip(shape, size, strict=True)), indexing="ij"), -1)
    coords = grid.reshape(-1, 3)
    scores = rng.random(len(coords))
    vol = volume_heatmap(scores, coords, size, shape)
    assert vol.shape == shape and not np.isnan(vol).any()
    for (i, j, k), s in zip(coords, scores, strict=True):
        assert np.allclose(vol[i : i + 4, j : j + 4, k : k + 2], s)
    # overlapping patches average; uncovered voxels keep the fill
    over = volume_heatmap([1.0, 0.0], [[0, 0, 0], [2, 0, 0]], (4, 1, 1), (8, 2, 2))
    assert np.allclose(over[:, 0, 0], [1, 1, 0.5, 0.5, 0, 0, np.nan, np.nan], equal_nan=True)
    assert np.isnan(over[0, 1, 1])


def test_bag_heatmap_uses_the_bag_geometry() -> None:
    from medwss.embed.store import FeatureBag
    from medwss.errors import InvalidDataError

    feats = np.zeros((2, 4), np.float32)
    slide_bag = FeatureBag(feats, np.array([[0, 0], [256, 0]]), attrs={"kind": "slide", "span": 256.0})
    heat = bag_heatmap(slide_bag, np.array([0.3, 0.7]), (512, 256), downsample=64)
    assert heat.shape == (4, 8) and np.allclose(heat[:, :4], 0.3) and np.allclose(heat[:, 4:], 0.7)
    clam_bag = FeatureBag(feats, np.array([[0, 0], [256, 0]]), attrs={"patch_size": 256, "patch_level": 0})
    assert np.array_equal(bag_heatmap(clam_bag, np.array([0.3, 0.7]), (512, 256), 64), heat)
    vol_bag = FeatureBag(feats, np.array([[0, 0, 0], [0, 0, 1]]), attrs={"kind": "axial2d", "tile_size": [4, 4, 1]})
    vol = bag_heatmap(vol_bag, np.array([0.1, 0.9]), (4, 4, 3))
    assert np.allclose(vol[..., 0], 0.1) and np.allclose(vol[..., 1], 0.9) and np.isnan(vol[..., 2]).all()
    with pytest.raises(InvalidDataError, match="span"):
        bag_heatmap(FeatureBag(feats, np.zeros((2, 2)), path="/x/case.h5"), np.zeros(2), (10, 10), 1)


def test_resample_mask_by_area() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:4, :2] = True
    down = resample_mask(mask, 16, 64)  # 4 × 4 input pixels per output pixel
    assert down.shape == (2, 2) and down[0, 0] and not down[0, 1] and not down[1, 0]
    up = resample_mask(mask, 16, 8)
    assert up.shape == (16, 16) and np.array_equal(up, mask.repeat(2, 0).repeat(2, 1))


def test_rasterize_gt_from_polygons_mask_and_files(tmp_path: Path) -> None:
    from PIL import Image

    dims, ds = (640, 480), 32  # grid 15 × 20
    square = np.array([[64.0, 96.0], [320.0, 96.0], [320.0, 288.0], [64.0, 288.0]])
    expected = np.zeros((15, 20), bool)
    expected[3:9, 2:10] = True
    assert np.array_equal(rasterize_gt([square], dims, ds), expected)
    write_geojson([square], tmp_path / "a.geojson")
    assert np.array_equal(rasterize_gt(tmp_path / "a.geojson", dims, ds), expected)
    mask16 = expected.repeat(2, 0).repeat(2, 1)
    assert np.array_equal(rasterize_gt(mask16, dims, ds, gt_downsample=16), expected)
    Image.fromarray(mask16.astype(np.uint8)).save(tmp_path / "m.png")
    assert np.array_equal(rasterize_gt(tmp_path / "m.png", dims, ds, gt_downsample=16), expected)
    with pytest.raises(ValueError, match="gt_downsample"):
        rasterize_gt(tmp_path / "m.png", dims, ds)


def test_mean_ci_averages_groups_first_and_resamples_groups() -> None:
    # patient a has three volumes at 1.0, patient b one at 0.0: the patient mean is 0.5, not 0.75
    values, groups = [1.0, 1.0, 1.0, 0.0, float("nan")], ["a", "a", "a", "b", "b"]
    m, lo, hi = mean_ci(values, groups, n_boot=200, seed=0)
    assert m == pytest.approx(0.5)
    assert lo == pytest.approx(0.0) and hi == pytest.approx(1.0)  # two patients: resamples are 0, 0.5 or 1
    m, lo, hi = mean_ci(values, n_boot=200, seed=0)  # cases resampled, the NaN dropped
    assert m == pytest.approx(0.75) and 0.0 <= lo < m < hi <= 1.0
    assert mean_ci(values, groups, n_boot=200, seed=0) == mean_ci(values, groups, n_boot=200, seed=0)
    one = mean_ci([0.3, float("inf")])
    assert one[0] == pytest.approx(0.3) and np.isnan(one[1]) and np.isnan(one[2])
    assert all(np.isnan(x) for x in mean_ci([]))
    with pytest.raises(ValueError, match="3 values but 2 groups"):
        mean_ci([1.0, 2.0, 3.0], ["a", "b"])


def test_paired_mean_ci_matches_cases_and_narrows_against_unpaired() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, 40)  # hard and easy cases, shared by both settings
    a = {f"c{i}": float(v + 0.05) for i, v in enumerate(base)}
    b = {f"c{i}": float(v) for i, v in enumerate(base)} | {"extra": 0.0}  # a case only b scored
    groups = {f"c{i}": f"p{i // 2}" for i in range(40)}
    m, lo, hi, n = paired_mean_ci(a, b, groups, n_boot=300)
    assert n == 40 and m == pytest.approx(0.05) and lo == pytest.approx(0.05) and hi == pytest.approx(0.05)
    _, ulo, uhi = mean_ci(list(a.values()), n_boot=300)
    assert uhi - ulo > 0.05  # the unpaired interval of one setting is far wider than the paired one
    assert np.isnan(paired_mean_ci({"x": 1.0}, {"y": 1.0})[0]) and paired_mean_ci({"x": 1.0}, {"y": 1.0})[3] == 0
