"""Shared tiny fixtures: a CT phantom at scale 0.5 (48×48×24) and a small active-learning config."""

from __future__ import annotations

import pytest

from medwss.active.metric import MetricConfig
from medwss.active.state import ALConfig
from medwss.seg.train import SegTrainConfig

CLASSES = [[1], [2, 3], [7]]


def tiny_config(**kw: object) -> ALConfig:
    base = {
        "classes": CLASSES,
        "num_classes": 4,
        "thumb_size": 32,
        "metric": MetricConfig(epochs=1, batch_size=32, device="cpu"),
        "seg": SegTrainConfig(channels=(8, 16, 32), dropout=0.2, epochs=1, batch_size=4, device="cpu"),
        "min_steps": 0,
        "device": "cpu",
    }
    return ALConfig.model_validate({**base, **kw})


@pytest.fixture(scope="session")
def ct_manifest(tmp_path_factory):
    from medwss.data.phantoms import generate

    return generate("ct", tmp_path_factory.mktemp("ct"), n=4, seed=0, scale=0.5, progress=False)
