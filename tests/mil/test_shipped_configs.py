"""The shipped configs/mil_<aggregator>.yaml train as the library and the benchmarks do."""

from __future__ import annotations

from pathlib import Path

import pytest

from medwss.config import load_config
from medwss.mil.config import MILTrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["insight", "abmil", "clam_sb", "transmil", "mean", "max"])
def test_aggregator_config_uses_the_library_lr_and_epochs(name: str) -> None:
    """Every aggregator's config trains at `MILTrainConfig`'s lr and epochs (what mil_phantom runs them at)."""
    cfg = load_config(CONFIGS / f"mil_{name}.yaml", MILTrainConfig)
    assert cfg.aggregator == name
    assert (cfg.lr, cfg.epochs) == (MILTrainConfig().lr, MILTrainConfig().epochs)
