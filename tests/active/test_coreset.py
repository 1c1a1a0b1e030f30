"""k-center greedy: hand-checked picks, equal to the naive reference, labelled points never picked."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.active.coreset import coverage_radius, kcenter_greedy, kcenter_naive
from medwss.errors import InvalidDataError


def test_hand_example_on_a_line():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # labelled {0}: the farthest point is 11, then 2 (d=2 to 0... vs 10: d=1 to 11), then 1 or 10 (both d=1)
    assert kcenter_greedy(x, 2, labelled=[0], device="cpu") == [4, 2]


def test_matches_naive_and_covers_better_than_random():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    fast = kcenter_greedy(x, 25, labelled=[3, 7], seed=1, chunk=128, device="cpu")
    slow = kcenter_naive(x, 25, labelled=[3, 7], seed=1)
    torch_loop = kcenter_greedy(x, 25, labelled=[3, 7], seed=1, chunk=128, device="cpu", blas=False)
    assert fast == slow == torch_loop
    assert len(set(fast)) == 25 and not {3, 7} & set(fast)
    rand = list(rng.choice(600, 27, replace=False))
    assert coverage_radius(x, fast + [3, 7]) < coverage_radius(x, rand)


def test_first_pick_seeded_and_candidates_respected():
    x = np.random.default_rng(1).normal(size=(50, 3))
    assert kcenter_greedy(x, 5, seed=4, device="cpu") == kcenter_greedy(x, 5, seed=4, device="cpu")
    picked = kcenter_greedy(x, 5, candidates=range(10, 20), device="cpu")
    assert all(10 <= i < 20 for i in picked)


def test_bad_budget():
    with pytest.raises(InvalidDataError, match="budget"):
        kcenter_greedy(np.zeros((3, 2)), 3, labelled=[0], device="cpu")


def test_first_centre_central_or_random():
    x = np.array([[0.0], [4.0], [5.0], [6.0], [10.0]])
    assert kcenter_greedy(x, 1, device="cpu")[0] == 2  # nearest the mean (5)
    assert kcenter_naive(x, 3) == kcenter_greedy(x, 3, device="cpu") == [2, 0, 4]
    firsts = {kcenter_greedy(x, 1, seed=s, first_centre="random", device="cpu")[0] for s in range(10)}
    assert len(firsts) > 1
