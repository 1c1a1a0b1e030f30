"""The contrastive slice metric trains and embeds; configs validate; budgets parse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medwss.active.features import feature_provider
from medwss.active.metric import MetricConfig, make_encoder, train_metric
from medwss.active.pool import SlicePool, SliceRef
from medwss.active.simulate import SimulateConfig
from medwss.active.state import ALConfig, parse_budget
from medwss.config import load_config
from medwss.errors import ConfigError
from tests.conftest import ROOT


def _pool(n: int = 24) -> SlicePool:
    rng = np.random.default_rng(0)
    refs = [SliceRef(f"v{i // 8}_z{i % 8:03d}", f"v{i // 8}", f"p{i // 16}", i // 8, i % 8, "x") for i in range(n)]
    base = rng.uniform(size=(3, 1, 16, 16))
    thumbs = np.clip(base[[r.volume for r in refs]] + 0.05 * rng.normal(size=(n, 1, 16, 16)), 0, 1)
    return SlicePool(refs, thumbs.astype(np.float32))


def test_train_metric_with_adjacent_positives_and_cached_features(tmp_path):
    pool = _pool()
    cfg = MetricConfig(epochs=2, batch_size=12, adjacent_weight=0.05, device="cpu")
    enc, hist = train_metric(
        pool.thumbs,
        pool.groups("volume"),
        pool.groups("patient"),
        pool.slice_index(),
        cfg,
        tmp_path / "m.pt",
        progress=False,
    )
    assert len(hist) == 2 and all(math.isfinite(h["loss"]) for h in hist)
    assert (tmp_path / "m.pt").exists() and make_encoder(cfg, tmp_path / "m.pt").embed_dim == enc.embed_dim
    get = feature_provider(pool, cfg, tmp_path / "features", progress=False)
    feats = get("contrastive")
    assert feats.shape == (24, enc.embed_dim) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    assert np.array_equal(np.load(tmp_path / "features" / "contrastive.npy"), feats)
    assert get("pixels").shape == (24, 256) and get("untrained").shape == feats.shape
    with pytest.raises(ConfigError, match="unknown features"):
        get("nope")


def test_shipped_configs_validate():
    cfg = load_config(ROOT / "configs" / "al.yaml", ALConfig)
    assert cfg.metric.temperature == 0.5 and (cfg.metric.volume_weight, cfg.metric.patient_weight) == (0.35, 0.05)
    sim = load_config(ROOT / "configs" / "al_simulate.yaml", SimulateConfig)
    assert len(sim.seeds) >= 3 and set(sim.modes) == {"full", "scribble"}


def test_budget_and_classes():
    assert parse_budget("1%", 312) == 4 and parse_budget("1%", 20) == 1 and parse_budget("7", 20) == 7
    with pytest.raises(ConfigError):
        parse_budget("lots", 10)
    with pytest.raises(ConfigError, match="num_classes"):
        ALConfig(classes=[[1], [2]], num_classes=2)


def test_group_order_runs_of_one_volume_and_group_batches_train():
    import torch

    from medwss.active.metric import group_order

    volume = torch.tensor([0] * 7 + [1] * 5 + [2] * 2)
    order = group_order(volume, 3, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(14))  # every slice once per epoch
    vols = volume[order].tolist()
    changes = [i for i in range(1, 14) if vols[i] != vols[i - 1]]
    runs = [b - a for a, b in zip([0, *changes], [*changes, 14], strict=True)]
    assert max(runs) <= 6 and sum(runs) == 14  # runs of ≤ 3 (two runs of one volume may meet)
    again = group_order(volume, 3, torch.Generator().manual_seed(0))
    assert torch.equal(order, again)  # seeded
    pool = _pool()
    cfg = MetricConfig(epochs=1, batch_size=8, slices_per_volume=4, device="cpu")
    _, hist = train_metric(pool.thumbs, pool.groups("volume"), pool.groups("patient"), pool.slice_index(), cfg,
                           progress=False)  # fmt: skip
    assert len(hist) == 1 and math.isfinite(hist[0]["loss"])
