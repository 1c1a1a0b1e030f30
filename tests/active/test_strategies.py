"""Every registered strategy returns `budget` distinct unlabelled pool indices, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.active.strategies import STRATEGIES, SelectionContext, get_strategy
from medwss.errors import ConfigError


def _ctx(with_model: bool) -> SelectionContext:
    rng = np.random.default_rng(0)
    feats = {"contrastive": rng.normal(size=(40, 6)), "untrained": rng.normal(size=(40, 6))}
    probs = [rng.dirichlet([1, 1, 1], size=(8, 8)).transpose(2, 0, 1) for _ in range(40)]

    def predict(idx, mc):
        noise = rng.uniform(0.9, 1.1, size=(3, 8, 8)) if mc else 1.0
        return [probs[i] * noise / (probs[i] * noise).sum(0) for i in idx]

    return SelectionContext(40, [0, 5, 9], feats.__getitem__, predict if with_model else None, seed=3, device="cpu")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("with_model", [False, True])
def test_contract(name, with_model):
    picked = get_strategy(name)(_ctx(with_model), 6)
    assert len(picked) == 6 and len(set(picked)) == 6
    assert not {0, 5, 9} & set(picked) and all(0 <= i < 40 for i in picked)
    if name != "bald":
        assert picked == get_strategy(name)(_ctx(with_model), 6)


def test_entropy_picks_the_most_uncertain():
    certain = np.zeros((2, 4, 4))
    certain[0] = 1
    flat = np.full((2, 4, 4), 0.5)
    probs = [certain, flat, certain, flat]
    ctx = SelectionContext(4, [3], lambda n: np.zeros((4, 2)), lambda idx, mc: [probs[i] for i in idx], device="cpu")
    assert get_strategy("entropy")(ctx, 1) == [1]
    assert get_strategy("margin")(ctx, 1) == [1]


def test_unknown():
    with pytest.raises(ConfigError, match="contrastive_coreset"):
        get_strategy("nope")


def test_contrastive_coreset_fuses_other_features():
    ctx = _ctx(False)
    plain = get_strategy("contrastive_coreset")(ctx, 5)
    ctx.fuse = {"untrained": 4.0}
    fused = get_strategy("contrastive_coreset")(ctx, 5)
    assert len(set(fused)) == 5 and fused != plain
