"""Shipped scribble configs validate and map onto the trainer's config."""

from __future__ import annotations

import pytest

from medwss.config import load_config
from medwss.scribble.config import ScribbleConfig
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("scribble_*.yaml"))


def test_the_shipped_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {
        "scribble_weak_size_2d",
        "scribble_weak_pce_2d",
        "scribble_full_2d",
        "scribble_weak_size_3d",
        "scribble_full_3d",
        "scribble_acdc_full",
        "scribble_acdc_pce",
        "scribble_acdc_size",
        "scribble_acdc_dmpls",
        "scribble_acdc_selftrain",
        "scribble_lgg_full",
        "scribble_lgg_pce",
        "scribble_lgg_size",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path):
    cfg = load_config(path, ScribbleConfig)
    seg = cfg.seg_config()
    if "acdc" in path.stem:  # cine MRI: one image, background + RV, myocardium, LV
        assert seg.in_channels == len(cfg.sequences) == 1 and seg.num_classes == 4 and len(cfg.priors()) == 3
        assert cfg.slice_size == 128 and cfg.crop_mm is None and cfg.use_scribble_column
        assert (cfg.method == "dmpls") == ("dmpls" in path.stem)
        assert (cfg.self_training == 1) == ("selftrain" in path.stem) and cfg.pseudo_model is None
    elif "lgg" in path.stem:  # brain MRI: FLAIR + T1 pre/post, one tumour class, circles from the masks
        assert cfg.sequences == ("flair", "t1pre", "t1post") and seg.in_channels == 3 and seg.num_classes == 2
        assert cfg.slice_size == 64 and cfg.crop_mm is None and cfg.weak_kind == "circle"
    else:  # the prostate bpMRI setting: T2, ADC, high-b; one lesion class
        assert seg.in_channels == len(cfg.sequences) == 3 and seg.num_classes == 2 and cfg.reference == "t2"
    assert seg.spatial_dims == (3 if path.stem.endswith("3d") else 2)
    if "full" in path.stem:
        assert cfg.supervision == "full" and seg.size_weight == 0
    if "size" in path.stem:
        assert cfg.supervision == "weak" and seg.size_weight > 0 and cfg.bounds != "none"
    if "pce" in path.stem or "dmpls" in path.stem:
        assert seg.size_weight == 0


def test_seg_config_passes_training_keys_through():
    seg = ScribbleConfig(size_weight=0.02, size_warmup=3, epochs=7, sequences=("t2", "adc")).seg_config()
    assert (seg.size_weight, seg.size_warmup, seg.epochs, seg.in_channels) == (0.02, 3, 7, 2)


def test_weak_kinds_come_from_the_shared_module():
    from pydantic import ValidationError

    from medwss.data.weak import WEAK_KINDS

    for kind in WEAK_KINDS:  # point and block included
        assert ScribbleConfig(weak_kind=kind).weak_kind == kind
    with pytest.raises(ValidationError, match="unknown weak label kind 'scribbly'.*point, block"):
        ScribbleConfig(weak_kind="scribbly")
