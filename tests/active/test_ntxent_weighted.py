"""The weighted multi-positive NT-Xent: reduces to NT-Xent, weights and negatives behave as documented."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medwss.embed.pretrain.ntxent import instance_positives, nt_xent, weighted_group_nt_xent


def _z(n: int = 8, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_no_groups_is_nt_xent():
    z = _z()
    assert torch.allclose(
        weighted_group_nt_xent(z, {}, temperature=0.5), nt_xent(z, instance_positives(4), 0.5), atol=1e-6
    )
    groups = {"volume": torch.tensor([0, 1, 2, 3])}  # every tile alone: nothing but instance pairs
    assert torch.allclose(
        weighted_group_nt_xent(z, groups, {"volume": 0.35}, 0.5), nt_xent(z, instance_positives(4), 0.5)
    )


def test_hand_computed_two_tiles_one_volume():
    # Two tiles, same volume; views 0,1 (first) and 2,3 (second). With exclusion, anchor 0 has
    # instance positive 2 and volume positives 1 and 3, and no negative: each term is -log(1) = 0.
    z = _z(4, 3)
    loss = weighted_group_nt_xent(z, {"volume": torch.tensor([7, 7])}, {"volume": 0.35}, 0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # Without exclusion, anchor i's instance term is -log softmax over the 3 others.
    zn = F.normalize(z, dim=1)
    s = zn @ zn.T / 0.5
    inst = sum(-(s[i, (i + 2) % 4] - torch.logsumexp(s[i][torch.arange(4) != i], 0)) for i in range(4)) / 4
    vol_pairs = {0: [1, 3], 1: [0, 2], 2: [1, 3], 3: [0, 2]}
    vol = (
        sum(
            sum(-(s[i, p] - torch.logsumexp(s[i][torch.arange(4) != i], 0)) for p in ps) / 2
            for i, ps in vol_pairs.items()
        )
        / 4
    )
    got = weighted_group_nt_xent(z, {"volume": torch.tensor([7, 7])}, {"volume": 0.35}, 0.5, False)
    assert got.item() == pytest.approx(float(inst + 0.35 * vol), rel=1e-5)


def test_group_weight_scales_its_term_and_zero_weight_only_removes_negatives():
    z = _z(12, 6, 1)
    g = {"volume": torch.tensor([0, 0, 1, 1, 2, 2])}
    base = weighted_group_nt_xent(z, g, {"volume": 0.0}, 0.5)
    one = weighted_group_nt_xent(z, g, {"volume": 1.0}, 0.5)
    half = weighted_group_nt_xent(z, g, {"volume": 0.5}, 0.5)
    assert torch.allclose(half - base, 0.5 * (one - base), atol=1e-5)
    # weight 0 still keeps same-volume views out of the negatives: lower than plain NT-Xent
    assert base < nt_xent(z, instance_positives(6), 0.5)


def test_relation_mask_for_adjacent_slices_and_gradients():
    z = _z(8, 4, 2).requires_grad_(True)
    index = torch.tensor([0, 1, 2, 5])
    adjacent = (index[:, None] - index[None, :]).abs() == 1
    loss = weighted_group_nt_xent(z, {"adjacent": adjacent}, {"adjacent": 0.05}, 0.5)
    loss.backward()
    assert math.isfinite(loss.item()) and z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        weighted_group_nt_xent(z, {"volume": torch.tensor([0, 1, 2])}, {}, 0.5)


def test_clustered_embeddings_score_lower_than_shuffled():
    groups = {"volume": torch.tensor([0, 0, 1, 1])}
    clustered = torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]).repeat(2, 1)
    shuffled = torch.tensor([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]]).repeat(2, 1)
    w = {"volume": 0.35}
    assert weighted_group_nt_xent(clustered, groups, w, 0.5, False) < weighted_group_nt_xent(
        shuffled, groups, w, 0.5, False
    )
