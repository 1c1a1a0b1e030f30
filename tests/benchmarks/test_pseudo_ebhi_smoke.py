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
TAU_METHODS = ("cam", "dhr", "cpal", "par", "dupl")


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
    chosen = json.loads((ROOT / "benchmarks" / "results" / "pseudo_ebhi_valtau.json").read_text())["cam_tau"]
    assert chosen["chosen_on"] == "val"
    for m in TAU_METHODS:  # the configs ship the threshold the val sweep chose
        assert (
            load_config(ROOT / "configs" / f"pseudo_ebhi_{m}.yaml", PSEUDO_METHODS.get(m).config).cam_tau
            == chosen["tau"]
        )
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
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--tag", "t"]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "pseudo_ebhi_t_quick.json").read_text())
    tau = res["cam_tau"]["tau"]  # chosen on the val tiles by the library sweep
    assert res["cam_tau"]["chosen_on"] == "val" and tau == res["cam_tau"]["sweep"]["best_tau"]
    fixed = [f"{m}_tau0.5" for m in TAU_METHODS] if tau != 0.5 else []
    assert list(res["pseudo"]) == [*METHODS, *fixed] and res["n_tiles"] == {"train": 8, "val": 8, "test": 8}
    for q in res["pseudo"].values():
        assert 0.0 <= q["coverage"] <= 1.0 and "miou" in q["val"]
    assert res["pseudo"]["cam"]["cam_tau"] == tau and res["configs"]["dupl"]["cam_tau"] == tau
    assert 0.05 <= res["pseudo"]["fuse"]["tau"] <= 0.95 and res["ablation"]
    bg = ["fuse_bg", "dupl_bg"] + (["dupl_tau0.5_bg"] if fixed else [])
    assert set(res["segmenter"]) == {"full", *METHODS, *fixed, *bg} == set(res["segmenter_val"])
    assert "dupl-cam" in res["paired"] and "dupl-cam" in res["paired_val"]
    assert "fuse-all_fg" in res["paired"] and set(res["paired_val"]["dhr-all_fg"]) == {"fg_dice"}
    if fixed:
        assert {"par_tau0.5-cam_tau0.5", "cam-cam_tau0.5", "dupl_bg-dupl_tau0.5_bg"} <= set(res["paired_val"])
        assert (tmp_path / "work" / "dupl_tau0.5" / "checkpoint.pt").is_file()  # its own students
    assert (
        res["seeds"] == [0]
        and res["epochs"] == 1
        and 0 < res["trivial_fg_dice"]["mean"] <= 1
        and 0 < res["trivial_fg_dice_val"]["mean"] <= 1
    )
    for s in res["segmenter"].values():
        assert 0.0 <= s["class_dice"] <= 1.0 and 0.0 <= s["fg_dice"] <= 1.0
    assert (tmp_path / "work" / "cam" / "model.pt").is_file()
    md = (tmp_path / "pseudo_ebhi_t_quick.md").read_text()
    assert "| fuse |" in md and "foreground prior otsu" in md and "abstained pixels as background" in md
    assert "chosen on the val tiles" in md and "val class Dice" in md
    assert all((tmp_path / "work" / "labels" / f"{m}.npz").is_file() for m in [*METHODS, *fixed])  # for --stage 2
    assert mod["main"]([*args, "--stage", "2"]) == 0  # stage 2 alone, from the saved labels and tables
    again = json.loads((tmp_path / "pseudo_ebhi_t_quick.json").read_text())
    assert again["cam_tau"] == res["cam_tau"] and set(again["segmenter"]) == set(res["segmenter"])


def test_pairs_match_each_set_with_its_cam_baseline_and_its_fixed_tau_twin():
    mod = runpy.run_path(str(BENCH))
    names = [
        "full",
        "cam",
        "fuse",
        "par",
        "dupl",
        "cam_tau0.5",
        "par_tau0.5",
        "dupl_tau0.5",
        "dupl_bg",
        "dupl_tau0.5_bg",
    ]
    pairs = mod["pairs_of"](names)
    assert ("par", "cam") in pairs and ("par_tau0.5", "cam_tau0.5") in pairs and ("full", "cam") in pairs
    assert ("cam", "cam_tau0.5") in pairs and ("dupl_bg", "dupl_tau0.5_bg") in pairs
    assert ("dupl_tau0.5_bg", "cam_tau0.5") in pairs and ("cam", "cam") not in pairs
    assert mod["variants"](0.05, "0.5") == [("", 0.05), ("_tau0.5", 0.5)] and mod["variants"](0.5, "0.5") == [("", 0.5)]
    with pytest.raises(SystemExit, match=r"--cam-tau 'x'"):
        mod["choose_cam_tau"]("x", [], {}, Path("."))
    assert mod["choose_cam_tau"]("0.3", [], {}, Path("."))[0] == 0.3


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
