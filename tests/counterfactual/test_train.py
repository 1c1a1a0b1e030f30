"""Configs load; classifier and COIN training run on tiny data and round-trip through their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.config import load_config
from medwss.counterfactual.classifier import (
    ClassifierConfig,
    load_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
)
from medwss.counterfactual.slices import SliceSpec
from medwss.counterfactual.train import CoinConfig, counterfactuals, load_generator, save_generator, train_coin

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate():
    assert load_config(ROOT / "configs" / "coin.yaml", CoinConfig).betas == (0.0, 0.999)
    assert load_config(ROOT / "configs" / "coin_classifier.yaml", ClassifierConfig).epochs > 0


def _toy(n: int = 24, s: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.6, -0.4, (n, 1, s, s)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, 0, 4:8, 4:8] = 0.8
    return x, y


def test_classifier_and_coin_train_and_round_trip(tmp_path):
    x, y = _toy()
    clf, hist = train_classifier(
        x, y, ClassifierConfig(channels=(4, 4, 8, 8), epochs=6, batch_size=8, lr=0.01), progress=False
    )
    assert len(hist) == 6 and hist[-1] < hist[0]
    p = save_classifier(clf, ClassifierConfig(channels=(4, 4, 8, 8)), SliceSpec(size=16), tmp_path / "c.pt")
    clf2, cfg2, spec2 = load_classifier(p)
    assert spec2.size == 16 and cfg2.channels == (4, 4, 8, 8)
    np.testing.assert_allclose(predict_proba(clf2, x), predict_proba(clf, x), atol=1e-6)
    cfg = CoinConfig(iterations=3, batch_size=4, gen_channels=(4, 8), disc_channels=(4, 8))
    G, history = train_coin(clf2, x, cfg, progress=False, labels=y)
    assert history and {"adv", "kl", "rec", "cyc", "tv", "d"} <= set(history[-1])
    G2 = load_generator(save_generator(G, cfg, tmp_path / "g.pt"))
    dec = np.array([1, 0] * 12)
    a, b = counterfactuals(G, x, dec), counterfactuals(G2, x, dec)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a[dec == 0], x[dec == 0], atol=1e-5)  # normal -> identity


def test_classifier_needs_both_classes():
    from medwss.errors import InvalidDataError

    x, _ = _toy(4)
    with pytest.raises(InvalidDataError):
        train_classifier(x, np.zeros(4, int), ClassifierConfig(epochs=1), progress=False)
    assert torch.get_num_threads() >= 1
