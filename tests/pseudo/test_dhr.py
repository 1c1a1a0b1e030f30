"""DHR: Sinkhorn marginals match the prior and a small class swallowed by argmax is recovered."""

from __future__ import annotations

import numpy as np

from medwss.pseudo.dhr import (
    class_prototypes,
    group_classes,
    presence_prior,
    prototype_heatmaps,
    rebalance,
    sinkhorn,
    slice_prior,
    uniform_prior,
    volume_prior,
)


def test_sinkhorn_marginals(rng):
    scores = rng.random((4, 300))
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    plan = sinkhorn(scores, prior, eps=0.1, n_iter=300)
    np.testing.assert_allclose(plan.sum(axis=1), prior, atol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(300, 1 / 300), atol=1e-9)
    plan0 = sinkhorn(scores, np.array([0.5, 0.5, 0.0, 0.0]), eps=0.1)
    assert plan0[2:].sum() == 0  # a class with no share gets no pixel


def _small_class_scene():
    gt = np.zeros((40, 40), int)
    gt[:, :20] = 1
    gt[5:10, 25:30] = 2  # 25 pixels, 1.6 %
    probs = np.zeros((3, 40, 40))
    probs[0], probs[1] = 0.6, 0.05
    probs[1, :, :20], probs[0, :, :20] = 0.7, 0.3
    probs[2, 5:10, 25:30] = 0.45  # weaker than background everywhere: argmax never picks it
    probs[2, 12:20, 25:35] = 0.2
    return gt, probs


def test_small_class_recovered():
    gt, probs = _small_class_scene()
    assert not (probs.argmax(0) == 2).any()
    lab = rebalance(probs, volume_prior([gt], 3))
    assert ((lab == 2) & (gt == 2)).sum() == 25 and (lab == 2).sum() == 25
    assert (lab == gt).mean() > 0.99


def test_absent_class_gets_nothing_and_mask():
    gt, probs = _small_class_scene()
    lab = rebalance(probs, uniform_prior(3), present=[True, True, False])
    assert not (lab == 2).any()
    mask = np.zeros(gt.shape, bool)
    mask[:, :30] = True
    lab = rebalance(probs, volume_prior([gt], 3), mask=mask)
    assert (lab[:, 30:] == -1).all()


def test_priors():
    a = np.zeros((10, 10), int)
    a[:5] = 1
    b = np.zeros((10, 10), int)
    np.testing.assert_allclose(volume_prior([a, b], 2), [0.75, 0.25])
    pres = presence_prior([a, b], 3)
    np.testing.assert_allclose(pres[:2], [0.75, 0.5])
    assert pres[2] == 1e-3
    p = slice_prior(np.array([0.9, 0.2, 0.1]), [True, True, False])
    np.testing.assert_allclose(p, [0.8, 0.2, 0.0])


def test_prototype_heatmaps_and_grouping(rng):
    feats = rng.normal(0, 0.1, (3, 8, 8))
    lab = np.zeros((8, 8), int)
    lab[:, 4:] = 1
    feats[0, :, :4] += 1.0
    feats[1, :, 4:] += 1.0
    protos = class_prototypes(feats, lab, 3)
    assert np.isnan(protos[2]).all()
    heat = prototype_heatmaps(feats, protos)
    assert heat.shape == (3, 8, 8) and (heat[2] == 0).all()
    assert (heat[0][:, :4] > heat[1][:, :4]).all() and (heat[1][:, 4:] > heat[0][:, 4:]).all()
    p = np.array([[1.0, 2.0, 3.0, 4.0], [1.1, 2.1, 2.9, 4.2], [4.0, 1.0, 3.0, -2.0]])
    assert group_classes(p, 0.9) == [[0, 1], [2]]
