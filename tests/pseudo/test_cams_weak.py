"""Weight-free activation maps (points, tags) and the sparse labels the pseudo methods derive from full maps."""

from __future__ import annotations

import numpy as np

from medwss.data.labels import IGNORE
from medwss.data.weak import make_weak_label, tags_of
from medwss.pseudo.cams import cam_threshold_labels, point_cams, point_stats, random_crops, with_background


def _scene():
    gt = np.zeros((30, 30), int)
    gt[5:15, 5:15] = 1
    gt[20:25, 20:26] = 2
    raw = np.choose(gt, [0.0, 60.0, 150.0]).astype(float)
    return gt, raw


def test_weak_labels_of_the_shared_generator():
    """The kinds the pseudo methods use (point, skeleton, block, box): every class marked, marks right."""
    gt, _ = _scene()
    pts = make_weak_label(gt, "point", seed=0, n_points=2)
    assert [(pts == c).sum() for c in (1, 2)] == [2, 2] and (pts == 0).any()
    for kind in ("point", "skeleton", "block"):
        weak = make_weak_label(gt, kind, seed=0)
        assert all((weak == c).any() for c in range(3)), kind  # class coverage, background included
        assert ((weak == IGNORE) | (weak == gt)).all(), kind  # precision: every mark is right
        assert (weak == IGNORE).mean() > 0.5, kind  # sparse: IGNORE elsewhere
    blk = make_weak_label(gt, "block", seed=0, size=3)
    assert (blk == 1).sum() == 9 and (blk == 2).sum() == 9
    box = make_weak_label(gt, "box", seed=0)
    assert (box[gt > 0] == IGNORE).all() and box[0, 0] == 0 and (box == 0).sum() == 900 - 100 - 30
    assert not (box > 0).any()
    assert (make_weak_label(gt, "skeleton", seed=3) == make_weak_label(gt, "skeleton", seed=3)).all()
    assert tags_of(gt, 4).tolist() == [True, True, True, False]


def test_point_cams_and_threshold():
    gt, raw = _scene()
    pts = make_weak_label(gt, "point", seed=1, n_points=3)
    stats = point_stats([raw], [pts], 3)
    assert stats[1, 0] == 60.0 and stats[1, 1] == 10.0  # std floored
    cams = point_cams(raw, pts, 3, stats, sigma_px=6.0, smooth=0.0)
    assert cams.shape == (2, 30, 30) and cams.max() <= 1
    lab = cam_threshold_labels(cams, 0.3)
    assert (lab[gt == 1] == 1).mean() > 0.8 and (lab[gt == 0] == 0).mean() > 0.95
    probs = with_background(cams, 0.5)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-5)
    none = point_cams(raw, np.full(gt.shape, -1), 3, stats)
    assert (none == 0).all()


def test_random_crops_tags():
    gt, raw = _scene()
    xs, ts = random_crops([raw[None] / 150], [gt], 3, 10, 20, seed=0)
    assert len(xs) == 20 and xs[0].shape == (3, 10, 10)  # intensity + 2 coordinate channels
    assert {tuple(t) for t in ts} >= {(0.0, 0.0), (1.0, 0.0)}


def test_tag_classifier_cams_and_features():
    from medwss.pseudo.cams import cams_and_features, train_cam_model

    gt, raw = _scene()
    images = [(raw[None] / 150).astype(np.float32)] * 2
    model = train_cam_model(images, [gt, gt], 3, epochs=1, crop=0.5, per_image=4, width=4)
    cams, feats = cams_and_features(model, images)
    assert cams[0].shape == (2, 30, 30) and feats[0].shape == (4, 30, 30)
    assert cams[0].min() >= 0 and cams[0].max() <= 1 + 1e-6
