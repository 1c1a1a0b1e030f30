"""RISE as in Petsiuk et al. (2018): mask statistics, normalisation, and a map that peaks where the decision lies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medwss.counterfactual.attribution import attribute
from medwss.counterfactual.attribution.rise import rise_masks, rise_saliency, scaled


class RegionClassifier(nn.Module):
    """Logit "abnormal" = 8 · (mean of the input over rows 4–11, cols 20–27 − 0.2); nothing else counts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 8 * (x[:, 0, 4:12, 20:28].mean((1, 2)) - 0.2)
        return torch.stack([torch.zeros_like(s), s], 1)


def test_masks_follow_the_paper():
    m = rise_masks(400, (32, 32), cells=4, p_keep=0.5, seed=0)
    assert m.shape == (400, 1, 32, 32) and m.min() >= 0 and m.max() <= 1 + 1e-6
    assert abs(float(m.mean()) - 0.5) < 0.03  # keep probability p
    # smooth: a cell is 8 px, so neighbouring pixels differ by at most one cell's ramp
    assert float((m[..., 1:] - m[..., :-1]).abs().max()) <= 1 / 8 + 1e-5
    # random shifts: the masks are not all aligned on the cell grid
    assert len({tuple(np.flatnonzero(np.diff(mi[0, 0].numpy()) != 0)[:1]) for mi in m[:50]}) > 1
    with pytest.raises(ValueError):
        rise_masks(0, (32, 32))


def test_saliency_is_the_expected_score_given_the_pixel_is_kept():
    """Σ p · M / (N · p_keep) for a constant classifier is the masks' mean over p_keep (≈ 1 where kept half the time)."""

    class Const(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 0.0]]).expand(len(x), 2)  # p = 0.5 everywhere

    masks = rise_masks(64, (16, 16), cells=4, seed=1)
    sal = rise_saliency(Const(), torch.zeros(1, 1, 16, 16), masks, p_keep=0.5, batch_size=10)
    torch.testing.assert_close(sal, 0.5 * masks[:, 0].sum(0) / (64 * 0.5))


@pytest.mark.parametrize("baseline", [0.0, -1.0, "mean"])
def test_rise_peaks_in_the_decisive_region(baseline):
    x = torch.full((1, 1, 32, 32), -0.5)
    x[..., 4:12, 20:28] = 0.8  # the region the decision reads
    x[..., 20:28, 4:12] = 0.8  # an equally bright square the classifier ignores
    maps = attribute("rise", RegionClassifier(), x, n_masks=600, cells=4, baseline=baseline, seed=0)
    assert maps.shape == (1, 32, 32) and maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    r, c = np.unravel_index(int(np.argmax(maps[0])), maps[0].shape)
    assert 2 <= r < 14 and 18 <= c < 30  # the peak lies on (or next to) rows 4–11, cols 20–27
    inside = maps[0, 4:12, 20:28].mean()
    outside = (maps[0].sum() - maps[0, 4:12, 20:28].sum()) / (32 * 32 - 64)
    assert inside > 2 * outside and inside > 2 * maps[0, 20:28, 4:12].mean()


def test_rise_rejects_an_unknown_baseline():
    with pytest.raises(ValueError, match="baseline"):
        attribute("rise", RegionClassifier(), torch.zeros(1, 1, 32, 32), n_masks=4, baseline="blur")


def test_logit_score_survives_a_saturated_classifier():
    """p = 1 on every masked copy: the probability map is the masks' coverage, the log-odds map finds the region."""

    class Saturated(RegionClassifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + torch.tensor([0.0, 40.0])  # abnormal logit ≥ 34: p = 1 in float32

    x = torch.full((1, 1, 32, 32), -0.5)
    x[..., 4:12, 20:28] = 0.8
    masks = rise_masks(300, (32, 32), cells=4, seed=0)
    coverage = scaled(masks[:, 0].sum(0, keepdim=True))
    prob = attribute("rise", Saturated(), x, n_masks=300, cells=4, seed=0)
    np.testing.assert_allclose(prob, coverage, atol=1e-5)  # the score carries no information
    logit = attribute("rise", Saturated(), x, n_masks=300, cells=4, seed=0, score="logit")
    r, c = np.unravel_index(int(np.argmax(logit[0])), logit[0].shape)
    assert 2 <= r < 14 and 18 <= c < 30 and logit[0, 4:12, 20:28].mean() > 1.5 * logit[0, 16:, :16].mean()
    with pytest.raises(ValueError, match="score"):
        attribute("rise", RegionClassifier(), x, n_masks=4, score="margin")
