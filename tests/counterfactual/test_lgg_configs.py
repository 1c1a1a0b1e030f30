"""The shipped LGG COIN configs load and validate, and carry the slicing and the training institutions."""

from __future__ import annotations

from pathlib import Path

import pytest

from medwss.counterfactual.config import read_classifier_file, read_coin_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_lgg_classifier_config_loads():
    cfg, spec, data = read_classifier_file(CONFIGS / "coin_lgg_classifier.yaml")
    assert spec.roi is None and spec.window == (0.0, 255.0) and spec.size == 64 and spec.lesion == "lesion"
    assert data.sites == ("DU", "HT") and data.train_split == "train" and cfg.epochs >= 1


def test_lgg_coin_config_loads():
    cfg, data = read_coin_file(CONFIGS / "coin_lgg.yaml")
    assert cfg.iterations >= 1 and data.sites == ("DU", "HT")


def test_kidney_configs_still_load_without_sections():
    _, spec, data = read_classifier_file(CONFIGS / "coin_classifier.yaml")
    assert spec.roi == "kidney" and data.sites is None
    assert read_coin_file(CONFIGS / "coin.yaml")[1].sites is None


def test_bad_sections_name_the_file_and_key(tmp_path):
    from medwss.errors import ConfigError

    bad = tmp_path / "c.yaml"
    bad.write_text("slices:\n  sizes: 64\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"slices\.sizes") as e:
        read_classifier_file(bad)
    assert "c.yaml" in str(e.value)
    bad.write_text("data:\n  sites: CS\n  nope: 1\n")
    with pytest.raises(ConfigError, match=r"data\.nope"):
        read_coin_file(bad)
    bad.write_text("slices:\n  window: nowhere\n")
    with pytest.raises(ConfigError, match="slices"):
        read_classifier_file(bad)
