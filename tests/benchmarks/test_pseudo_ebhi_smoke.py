"""The EBHI tile-tag benchmark runs in quick mode on the real tiles; the tile converter and configs work."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "pseudo_ebhi.py"
METHODS = ("cam", "fuse", "dhr", "cpal", "par", "dupl")


def test_ebhi_configs_load_and_name_registered_methods():
    from medwss.config import load_config
    from medwss.pseudo.config import AgmmPseudoConfig, FusePseudoConfig
    from medwss.pseudo.methods import PSEUDO_METHODS

    for m in METHODS:
        cfg = load_config(ROOT / "configs" / f"pseudo_ebhi_{m}.yaml", PSEUDO_METHODS.get(m).config)
        assert PSEUDO_METHODS.get(m).name == m
        assert cfg.classes() == ["background", "benign", "malignant"] and cfg.cam_source == "tags"
        assert cfg.cam_crop is None  # image-level (whole-tile) tags only
    assert load_config(ROOT / "configs" / "pseudo_ebhi_fuse.yaml", FusePseudoConfig).tau is None  # chosen on val
    acdc = load_config(ROOT / "configs" / "pseudo_acdc_agmm.yaml", AgmmPseudoConfig)
    assert acdc.classes() == ["background", "RV", "myocardium", "LV"] and acdc.slice_size == 128


def test_tiles_become_one_slice_volumes_with_the_tag_on_the_mask(real, tmp_path):
    from medwss.data.manifest import load_manifest
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.tiles import tiles_to_volumes
    from medwss.pseudo.volumes import slice_case

    src = real / "histo" / "ebhi" / "manifest.csv"
    if not src.is_file():
        pytest.skip(f"EBHI data not found under {real}")
    path, failed = tiles_to_volumes(src, tmp_path, size=16, splits=["test"], max_per_split=3)
    man = load_manifest(path)
    assert failed == [] and len(man) == 3 and {c.split for c in man} == {"test"}
    cfg = PseudoConfig(labels={"benign": 1, "malignant": 2}, window=(0, 255))
    for case in man:
        s = slice_case(case, cfg)
        assert len(s.images) == 1 and s.images[0].shape == (1, 16, 16)
        assert set(np.unique(s.gts[0])) <= {0, 1 + int(case.label)} and (s.gts[0] > 0).any()


@pytest.mark.slow
def test_pseudo_ebhi_quick(real, tmp_path):
    if not (real / "histo" / "ebhi" / "manifest.csv").is_file():
        pytest.skip(f"EBHI data not found under {real}")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "pseudo_ebhi_quick.json").read_text())
    assert list(res["pseudo"]) == list(METHODS) and res["n_tiles"] == {"train": 8, "val": 8, "test": 8}
    for q in res["pseudo"].values():
        assert 0.0 <= q["coverage"] <= 1.0
    assert 0.05 <= res["pseudo"]["fuse"]["tau"] <= 0.95 and res["ablation"]
    assert set(res["segmenter"]) == {"full", *METHODS, "fuse_bg", "dupl_bg"} and "dupl-cam" in res["paired"]
    assert (
        res["seeds"] == [0]
        and res["epochs"] == 1
        and 0 < res["trivial_fg_dice"]["mean"] <= 1
        and sorted(res["pseudo"]) == sorted(METHODS)
    )
    for s in res["segmenter"].values():
        assert 0.0 <= s["class_dice"] <= 1.0 and 0.0 <= s["fg_dice"] <= 1.0
    assert (tmp_path / "work" / "cam" / "model.pt").is_file()
    md = (tmp_path / "pseudo_ebhi_quick.md").read_text()
    assert "| fuse |" in md and "foreground prior otsu" in md and "abstained pixels as background" in md
    assert all((tmp_path / "work" / "labels" / f"{m}.npz").is_file() for m in METHODS)  # for --stage 2


def test_stage2_reads_stage1_labels_and_refuses_missing_ones(tmp_path, capsys):
    from types import SimpleNamespace

    mod = runpy.run_path(str(BENCH))
    cases = [SimpleNamespace(case_id=f"t{i}") for i in range(3)]
    labels = [np.full((4, 4), i - 1, dtype=np.int64) for i in range(3)]  # -1 = abstained
    for m in METHODS:
        mod["save_labels"](tmp_path / "labels" / f"{m}.npz", cases, labels)
    back = mod["load_labels"](tmp_path / "labels", cases)
    assert list(back) == list(METHODS) and all(np.array_equal(a, b) for a, b in zip(back["fuse"], labels, strict=True))
    assert [int(y.min()) for y in mod["abstained_as_background"](back["fuse"])] == [0, 0, 1]
    with pytest.raises(SystemExit, match=r"no labels for 1 train tiles"):
        mod["load_labels"](tmp_path / "labels", [*cases, SimpleNamespace(case_id="t9")])
    (tmp_path / "labels" / "par.npz").unlink()
    with pytest.raises(SystemExit, match=r"par\.npz: no stage-1 labels"):
        mod["load_labels"](tmp_path / "labels", cases)
    with pytest.raises(SystemExit, match=r"cannot read the stage-1 results"):
        mod["stage1_record"](tmp_path / "none.json")
    with pytest.raises(SystemExit):
        mod["main"](["--stage", "2", "--out", str(tmp_path)])
    assert "--stage 2 needs --work" in capsys.readouterr().err
