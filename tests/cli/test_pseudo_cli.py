"""`medwss pseudo ...`: every method from the CLI on the real CT and on phantoms; files, records, errors."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.cli.main import main

METHODS = ["box", "cam", "dhr", "fuse", "sweep", "cpal", "par", "agmm", "dupl", "reach"]


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def real_manifest(tmp_path, real) -> Path:
    vol = real / "volumes"
    row = {"case_id": "real_ct", "patient_id": "p0", "site": "ts", "modality": "CT"}
    row |= {"image": str(vol / "example_ct_sm.nii.gz"), "mask": str(vol / "example_seg.nii.gz")}
    return _manifest(tmp_path / "real.csv", [row])


@pytest.fixture(scope="module")
def phantom_manifest(tmp_path_factory) -> Path:
    from medwss.data.phantoms import generate

    return generate("ct", tmp_path_factory.mktemp("ct"), n=3, seed=0, scale=0.35, progress=False)


def test_box_on_real_ct_writes_labels_previews_metrics(real_manifest, tmp_path, real, capsys):
    import nibabel as nib

    out = tmp_path / "box"
    argv = ["pseudo", "box", str(real_manifest), "--out", str(out), "--labels", "totalseg", "--downsample", "2"]
    assert main(argv + ["--quiet"]) == 0
    assert "Dice" in capsys.readouterr().out
    img = nib.load(out / "labels" / "real_ct.nii.gz")
    src = nib.load(real / "volumes" / "example_ct_sm.nii.gz")
    assert img.get_data_dtype() == np.int16 and img.shape == src.shape and np.allclose(img.affine, src.affine)
    values = set(np.unique(np.asarray(img.dataobj)).tolist())
    assert values <= {-1, 0, 1, 2, 3, 4} and {-1, 0, 3, 4} <= values
    assert (out / "previews" / "real_ct.png").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "pseudo box" and run["config"]["segmenter"] == "random_walker"
    pooled = run["metrics"]["pooled"]
    assert pooled["per_class"]["right_kidney"]["dice"] > 0.6 and pooled["per_class"]["left_kidney"]["dice"] > 0.6
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[0]["case_id"] == "pooled" and float(rows[0]["dice_left_kidney"]) > 0.6
    ev = tmp_path / "eval"
    assert (
        main(
            [
                "pseudo",
                "evaluate",
                str(out / "labels"),
                str(real_manifest),
                "--out",
                str(ev),
                "--labels",
                "totalseg",
                "--downsample",
                "2",
            ]
        )
        == 0
    )
    again = json.loads((ev / "metrics.json").read_text())["pooled"]
    assert again["mean_dice"] == pytest.approx(pooled["mean_dice"], abs=1e-6)


def test_fuse_records_swept_tau_and_skips_a_bad_case(phantom_manifest, tmp_path, capsys):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    rows = list(csv.DictReader(phantom_manifest.open()))
    for r in rows:
        r["image"], r["mask"] = str(phantom_manifest.parent / r["image"]), str(phantom_manifest.parent / r["mask"])
    rows.append({**rows[0], "case_id": "broken", "patient_id": "px", "image": str(bad), "split": "train"})
    man = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "sweep"
    assert main(["pseudo", "sweep", str(man), "--out", str(out), "--quiet"]) == 3  # broken failed
    assert "skipped broken" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    sweep = json.loads((out / "sweep.json").read_text())
    assert run["metrics"]["tau"] == sweep["best_tau"] and sweep["best_dice"] == max(sweep["dice"])
    assert run["metrics"]["failed"][0].startswith("broken:")
    assert len(list((out / "labels").glob("*.nii.gz"))) == 3


def test_errors_are_one_line(tmp_path, real_manifest, capsys):
    assert main(["pseudo", "box", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "none.csv" in capsys.readouterr().err
    argv = [
        "pseudo",
        "box",
        str(real_manifest),
        "--out",
        str(tmp_path / "o"),
        "--segmenter",
        "sam",
        "--checkpoint",
        "x.pth",
    ]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("medwss: error:") and "segment_anything" in last
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eps: -1\n")
    assert main(["pseudo", "dhr", str(real_manifest), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "eps" in capsys.readouterr().err


def test_shipped_configs_validate():
    from medwss.config import load_config
    from medwss.pseudo.config import BoxPseudoConfig
    from medwss.pseudo.methods import PSEUDO_METHODS
    from tests.conftest import ROOT

    box = "pseudo_polyp"  # the Kvasir box benchmark's own settings
    files = sorted(f for f in (ROOT / "configs").glob("pseudo_*.yaml") if not f.name.startswith(box))
    assert len(files) >= 8 and ROOT / "configs" / "pseudo_kvasir_box.yaml" in files
    for f in files:  # each against its method's own class (a key the method does not read is an error)
        method = f.stem.split("_")[-1]  # pseudo_<method>.yaml, pseudo_<dataset>_<method>.yaml
        names = [method] if method in PSEUDO_METHODS else list(PSEUDO_METHODS)  # pseudo_real_ct: any method
        for name in names:
            cfg = load_config(f, PSEUDO_METHODS.get(name).config)
            assert cfg.seed == 0 and isinstance(cfg, PSEUDO_METHODS.get(name).config), (f.name, name)
    bench = runpy.run_path(str(ROOT / "benchmarks" / "pseudo_polyp.py"))["PolypBenchConfig"]
    boxes = {f.name: load_config(f, bench) for f in (ROOT / "configs").glob("pseudo_*.yaml") if f.name.startswith(box)}
    assert len(boxes) >= 4
    # the shipped `medwss pseudo box` config is the benchmark's winner: grabcut+ignore of pseudo_polyp_gcd2.yaml
    win = boxes["pseudo_polyp_gcd2.yaml"]
    ship = load_config(ROOT / "configs" / "pseudo_kvasir_box.yaml", BoxPseudoConfig)
    assert (ship.segmenter, ship.segmenter_settings, ship.inside) == ("grabcut", win.segmenters["grabcut"][0], "ignore")
    assert "grabcut" in win.inside_for and win.inside == ["ignore"] and ship.box_threshold == 0.5
    assert (ship.ring, ship.slice_size, ship.min_component) == (win.ring, win.size, win.min_component)
    assert ship.spec().num_classes == 2


def test_flags_are_generated_from_each_methods_config(real_manifest, tmp_path, capsys):
    import argparse

    from medwss.cli.main import build_parser
    from medwss.cli.options import check_every_field_has_a_flag
    from medwss.cli.pseudo import resolve
    from medwss.pseudo.methods import PSEUDO_METHODS

    (top,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    (sub,) = (a for a in top.choices["pseudo"]._actions if isinstance(a, argparse._SubParsersAction))
    for name, method in PSEUDO_METHODS.items():
        parser = sub.choices[name]
        assert check_every_field_has_a_flag(method.config, parser) == [], name
        dests = {a.dest for a in parser._actions} - {"help", "manifest", "out", "config", "quiet", "boxes", "offline"}
        assert dests == set(method.config.model_fields), name
    text = sub.choices["dhr"].format_help()
    assert "--cam-tau X" in text and "Sinkhorn entropic regularisation" in text and "(default: 0.01)" in text
    a = sub.choices["dhr"].parse_args(["m.csv", "--out", "o", "--cam-source", "tags", "--minor", "liver,spleen"])
    assert (a.cam_source, a.minor) == ("tags", ["liver", "spleen"])
    with pytest.raises(SystemExit):
        sub.choices["dhr"].parse_args(["m.csv", "--out", "o", "--prior", "flat"])  # a Literal gives choices
    with pytest.raises(SystemExit):
        sub.choices["fuse"].parse_args(["m.csv", "--out", "o", "--cam-tau", "0.3"])  # fusion does not read it
    capsys.readouterr()
    yml = tmp_path / "fuse.yaml"
    yml.write_text("cam_tau: 0.4\n")  # a YAML key the method does not read: one line naming it and the file
    assert main(["pseudo", "fuse", str(real_manifest), "--out", str(tmp_path / "o"), "--config", str(yml)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cam_tau" in err and "fuse.yaml" in err
    yml.write_text("labels: totalseg\ncam_tau: 0.4\nprior: uniform\n")  # defaults < YAML < flags
    cfg = resolve(sub.choices["dhr"].parse_args(["m.csv", "--out", "o", "--config", str(yml), "--cam-tau", "0.3"]))
    assert (type(cfg).__name__, cfg.labels, cfg.cam_tau, cfg.prior) == ("DhrPseudoConfig", "totalseg", 0.3, "uniform")
    ev = sub.choices["evaluate"].parse_args(["l", "m.csv", "--out", "o", "--config", str(yml), "--downsample", "2"])
    assert resolve(ev).model_dump() == {**resolve(ev).model_dump(), "labels": "totalseg", "downsample": 2}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_real_ct_and_phantoms(method, real_manifest, phantom_manifest, tmp_path):
    extra = ["--iterations", "12"] if method in ("agmm", "dupl") else []
    for name, man, labels in (("real", real_manifest, "totalseg"), ("phantom", phantom_manifest, "ct_phantom")):
        out = tmp_path / name
        argv = ["pseudo", method, str(man), "--out", str(out), "--labels", labels, "--downsample", "2", "--quiet"]
        assert main(argv + extra) == 0
        run = json.loads((out / "run.json").read_text())
        assert run["command"] == f"pseudo {method}" and 0 <= run["metrics"]["pooled"]["coverage"] <= 1
        assert (out / "metrics.csv").exists() and any((out / "labels").glob("*.nii.gz"))
    if method == "agmm":
        assert (
            main(
                [
                    "pseudo",
                    "agmm",
                    str(real_manifest),
                    "--out",
                    str(tmp_path / "off"),
                    "--labels",
                    "totalseg",
                    "--offline",
                    "--downsample",
                    "2",
                    "--quiet",
                ]
            )
            == 0
        )


@pytest.mark.parametrize(
    ("method", "kind", "flags"),
    [
        ("cam", "pseudo_cam", ["--cam-source", "tags", "--cam-epochs", "2"]),
        ("agmm", "pseudo_agmm", ["--iterations", "4"]),
        ("dupl", "pseudo_dupl", ["--iterations", "4"]),
    ],
)
def test_training_methods_checkpoint_resume_and_save_a_model_file(
    method, kind, flags, phantom_manifest, tmp_path, capsys
):
    import nibabel as nib

    from medwss.train import load_model

    out = tmp_path / method
    argv = ["pseudo", method, str(phantom_manifest), "--out", str(out), "--downsample", "4", "--device", "cpu"]
    assert main(argv + flags + ["--quiet"]) == 0
    assert (out / "checkpoint.pt").exists()
    model, record = load_model(out / "model.pt")
    assert record.kind == kind and record.meta["classes"][0] == "background"
    first = {p.name: np.asarray(nib.load(p).dataobj) for p in (out / "labels").glob("*.nii.gz")}
    assert main(argv + flags + ["--quiet"]) == 0  # run again: resumes from the finished checkpoint
    again, _ = load_model(out / "model.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert all(
        np.array_equal(first[p.name], np.asarray(nib.load(p).dataobj)) for p in (out / "labels").glob("*.nii.gz")
    )
    if method != "cam":  # other settings in the same folder: an error naming them, not a silent restart
        capsys.readouterr()
        assert main(argv + ["--iterations", "5", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "iterations" in err and "checkpoint" in err
