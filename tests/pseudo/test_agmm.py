"""AGMM: loss terms and gradients, training on sparse labels, the offline GMM refiner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.data.labels import IGNORE
from medwss.data.weak import make_weak_label
from medwss.pseudo.agmm import AGMMLoss, gmm_refine, position_features, within_reach
from medwss.pseudo.agmm_train import predict_labels, train_agmm
from medwss.pseudo.nets import TinyFCN


def _toy(rng, n=4):
    images, gts = [], []
    for i in range(n):
        gt = np.zeros((24, 24), int)
        gt[4 + i : 12 + i, 5:15] = 1
        gt[16:21, 14 + i // 2 : 20 + i // 2] = 2
        img = np.choose(gt, [0.0, 1.0, -1.0]) + rng.normal(0, 0.2, gt.shape)
        images.append(img[None].astype(np.float32))
        gts.append(gt)
    return images, gts


def test_loss_terms_and_gradients(rng):
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 10, 10, requires_grad=True)
    logits = torch.randn(2, 3, 10, 10, requires_grad=True)
    sparse = torch.full((2, 10, 10), -1, dtype=torch.long)
    sparse[:, 1, 1], sparse[:, 5, 5], sparse[:, 8, 8] = 0, 1, 2
    present = torch.tensor([[True, True, False], [True, True, True]])
    parts = AGMMLoss(3)(feats, logits, sparse, present)
    assert parts.ce > 0 and parts.gmm > 0 and parts.negative > 0 and parts.separation >= 0
    parts.total.backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    none = AGMMLoss(3)(feats, logits, torch.full((2, 10, 10), -1, dtype=torch.long))
    assert float(none.total.detach()) == 0.0  # nothing labelled, no image labels: no signal


def test_training_decreases_loss(rng):
    images, gts = _toy(rng, 2)
    sparse = [make_weak_label(g, "skeleton", seed=0) for g in gts]
    torch.manual_seed(0)
    net = TinyFCN(1, 3, width=4, dilations=(1,), coords=False)
    _, history = train_agmm(images, sparse, 3, None, iterations=15, lr=1e-2, batch_size=2, seed=0, model=net)
    assert len(history) == 15 and np.mean(history[-3:]) < np.mean(history[:3])


@pytest.mark.slow
def test_training_segments_from_scribbles(rng):
    images, gts = _toy(rng)
    sparse = [make_weak_label(g, "skeleton", seed=0) for g in gts]
    assert all((s >= 0).mean() < 0.2 for s in sparse)
    gts[0][gts[0] == 2] = 0  # image 0 is tagged without class 2: the negative term must clear it
    sparse[0][sparse[0] == 2] = -1

    def class2_in_image0(tagged: bool) -> tuple[int, float]:
        present = [np.array([True, True, not tagged])] + [np.array([True, True, True])] * (len(gts) - 1)
        torch.manual_seed(0)
        net = TinyFCN(1, 3, width=8, dilations=(1, 2), coords=False)
        model, history = train_agmm(images, sparse, 3, present, iterations=60, lr=1e-2, seed=0, model=net)
        assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
        pred = predict_labels(model, images)
        acc = np.mean([(p == g).mean() for p, g in zip(pred, gts, strict=True)])
        return int((pred[0] == 2).sum()), float(acc)

    tagged, acc = class2_in_image0(True)
    assert acc > 0.7  # from under 15 % of pixels labelled
    untagged, _ = class2_in_image0(False)
    assert tagged < 30 and tagged < 0.5 * untagged  # the class-2-looking block (30 px) is cut back by the tag


def test_gmm_refine_from_scribbles(rng):
    images, gts = _toy(rng, 1)
    sparse = make_weak_label(gts[0], "skeleton", seed=0)
    out = gmm_refine(position_features(images[0][0]), sparse, 3, confidence=0.9, standardize=False)
    labelled = out >= 0
    assert labelled.mean() > 0.7 and (out[labelled] == gts[0][labelled]).mean() > 0.93  # background alone: 0.81
    assert (out[sparse >= 0] == sparse[sparse >= 0]).all()  # given labels are kept
    absent = gmm_refine(
        position_features(images[0][0]), sparse, 3, present=np.array([True, True, False]), standardize=False
    )
    assert not (absent[sparse < 0] == 2).any()


def test_within_reach_makes_the_far_field_background():
    sparse = np.full((20, 30), IGNORE)
    sparse[10, 5:8] = 3  # a foreground scribble
    sparse[0, 0] = 0  # a background scribble
    labels = np.full((20, 30), 3)
    labels[0:3, 25:30] = IGNORE
    out = within_reach(labels, sparse, reach_mm=4.0, pixel_mm=(1.0, 2.0))
    # 4 mm = 4 rows or 2 columns of 2 mm from the scribble
    assert out[14, 6] == 3 and out[15, 6] == 0 and out[10, 9] == 3 and out[10, 10] == 0
    assert out[0, 28] == 0 and out[0, 0] == 0 and (out[10, 5:8] == 3).all()
    r, c = np.indices((20, 30))
    dist = np.min([np.hypot(r - 10, 2.0 * (c - j)) for j in (5, 6, 7)], axis=0)  # mm, anisotropic pixels
    np.testing.assert_array_equal(out == 3, dist <= 4.0)
    assert not (out == IGNORE).any()  # the abstained far pixels are background now
    none = within_reach(labels, np.where(sparse > 0, IGNORE, sparse), 4.0, (1.0, 1.0))  # no foreground scribble
    assert set(np.unique(none).tolist()) == {0}
