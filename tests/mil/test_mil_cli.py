"""`medwss mil train|predict|heatmap` end to end, including bags written by another tool."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from medwss.cli.main import main
from medwss.data import load_manifest, write_manifest
from medwss.embed.store import load_bag


@pytest.fixture(scope="module")
def bags_manifest(tmp_path_factory):
    from medwss.data.phantoms import generate

    root = tmp_path_factory.mktemp("mil")
    m = generate("wsi", root / "wsi", n=8, seed=2, scale=0.5, progress=False)
    assert main(["tile", str(m), "--out", str(root / "tiles"), "--mpp", "2", "--tile-size", "64", "--quiet"]) == 0
    args = [
        "embed",
        str(m),
        "--tiles",
        str(root / "tiles"),
        "--out",
        str(root / "bags"),
        "--encoder",
        "stats",
        "--quiet",
    ]
    assert main(args) == 0
    return root / "bags" / "manifest.csv"


def _clam_copy(manifest, out):
    """The same cases with bags rewritten as CLAM does: only `features` and `coords` (patch_size on coords)."""
    rows = []
    for c in load_manifest(manifest):
        fb = load_bag(c.features)
        path = out / f"{c.case_id}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=fb.features.astype(np.float32))
            d = f.create_dataset("coords", data=fb.coords)
            d.attrs["patch_size"] = int(fb.attrs["span"])
            d.attrs["patch_level"] = 0
        rows.append({"case_id": c.case_id, "patient_id": c.patient_id, "site": c.site, "modality": c.modality,
                     "image": c.image, "label": c.label, "mask": c.mask, "split": c.split, "features": path})  # fmt: skip
    return write_manifest(rows, out / "manifest.csv")


def test_train_predict_heatmap_on_foreign_bags(bags_manifest, tmp_path, capsys):
    foreign = _clam_copy(bags_manifest, tmp_path)
    run = tmp_path / "run"
    assert (
        main(["mil", "train", str(foreign), "--out", str(run), "--aggregator", "insight", "--epochs", "3", "--quiet"])
        == 0
    )
    assert (run / "model.pt").exists() and (run / "run.json").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cases"]["train"] > 0 and "test" in metrics
    assert len(json.loads((run / "history.json").read_text())) == 3
    preds = tmp_path / "preds.csv"
    assert main(["mil", "predict", str(foreign), "--model", str(run / "model.pt"), "--out", str(preds)]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 8 and all(0 <= float(r["prob"]) <= 1 for r in rows)
    assert (tmp_path / "preds.metrics.json").exists()
    hm = tmp_path / "hm"
    assert main(["mil", "heatmap", str(foreign), "--model", str(run / "model.pt"), "--out", str(hm), "--quiet"]) == 0
    case = rows[0]["case_id"]
    for suffix in ("_scores.csv", "_scores.h5", "_overlay.png", "_heatmap.tif", "_heatmap.geojson"):
        assert (hm / f"{case}{suffix}").stat().st_size > 0
    from medwss.io import open_slide

    with open_slide(hm / f"{case}_heatmap.tif") as s, open_slide(load_manifest(foreign).cases[0].image) as src:
        assert abs(s.dimensions[0] * s.mpp - src.dimensions[0] * src.mpp) <= s.mpp  # same physical width


@pytest.mark.parametrize("aggregator", ["abmil", "clam_sb", "transmil", "mean", "max"])
def test_baselines_train_from_cli(bags_manifest, tmp_path, aggregator):
    run = tmp_path / aggregator
    assert (
        main(
            [
                "mil",
                "train",
                str(bags_manifest),
                "--out",
                str(run),
                "--aggregator",
                aggregator,
                "--epochs",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert (run / "model.pt").exists()


def test_resume_from_checkpoint(bags_manifest, tmp_path):
    run = tmp_path / "r"
    main(["mil", "train", str(bags_manifest), "--out", str(run), "--aggregator", "abmil", "--epochs", "2", "--quiet"])
    h2 = json.loads((run / "history.json").read_text())
    main(["mil", "train", str(bags_manifest), "--out", str(run), "--aggregator", "abmil", "--epochs", "4", "--quiet"])
    h4 = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in h4] == [0, 1, 2, 3] and h4[:2] == h2  # epochs 0-1 were not redone


def test_unlabelled_manifest_is_a_clear_error(bags_manifest, tmp_path, capsys):
    rows = []
    for c in load_manifest(bags_manifest):
        rows.append({"case_id": c.case_id, "patient_id": c.patient_id, "site": c.site, "modality": c.modality,
                     "image": c.image, "features": c.features})  # fmt: skip
    m = write_manifest(rows, tmp_path / "m.csv")
    assert main(["mil", "train", str(m), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "no labelled training cases" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_ddp_two_processes(bags_manifest, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533", "-m", "medwss",
           "mil", "train", str(bags_manifest), "--out", str(run), "--aggregator", "insight", "--epochs", "2", "--quiet",
           "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "model.pt").exists() and len(json.loads((run / "history.json").read_text())) == 2


def test_same_seed_same_model(bags_manifest, tmp_path):
    import torch

    for name in ("a", "b"):
        args = ["mil", "train", str(bags_manifest), "--out", str(tmp_path / name), "--aggregator", "insight"]
        assert main([*args, "--epochs", "2", "--seed", "3", "--quiet"]) == 0
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
