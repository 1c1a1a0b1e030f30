"""`medwss al`: init → select → annotate by script → ingest (a bad file rejected) → train → select → status."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from medwss.cli.main import main
from medwss.data.labels import LabelSpec
from medwss.io import load_volume, save_nifti
from medwss.io.volume import Volume

CLASSES = [[1], [2, 3], [7]]


@pytest.mark.slow
def test_al_round_trip_from_the_command_line(tmp_path, capsys):
    from medwss.data.phantoms import generate

    manifest = generate("ct", tmp_path / "ct", n=3, seed=1, scale=0.5, progress=False)
    cfg = tmp_path / "al.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "classes": CLASSES,
                "num_classes": 4,
                "thumb_size": 32,
                "metric": {"epochs": 1, "batch_size": 32},
                "seg": {"channels": [8, 16, 32], "dropout": 0.1, "epochs": 1, "batch_size": 4},
                "min_steps": 0,
                "device": "cpu",
            }
        )
    )
    state = tmp_path / "state"
    assert main(["al", "init", str(manifest), "--state", str(state), "--config", str(cfg), "--quiet"]) == 0
    assert "pool: 72 slices of 3 volumes" in capsys.readouterr().out
    assert main(["al", "select", "--state", str(state), "--budget", "3%", "--quiet"]) == 0
    export = state / "rounds" / "round_001"
    with open(export / "selection.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all((export / "previews" / f"{r['slice_id']}.png").exists() for r in rows)
    ann = tmp_path / "ann"
    for r in rows:
        img = load_volume(export / "images" / f"{r['slice_id']}.nii.gz")
        lab = load_volume(str(r["source_image"]).replace("images", "labels")).array[:, :, int(r["slice_index"])]
        save_nifti(
            Volume(LabelSpec.from_groups(CLASSES).remap(lab).astype(np.uint8)[:, :, None], img.affine),
            ann / f"{r['slice_id']}.nii.gz",
        )
    first = load_volume(export / "images" / f"{rows[0]['slice_id']}.nii.gz")
    shifted = first.affine.copy()
    shifted[0, 3] += 1.5
    save_nifti(Volume(np.zeros((48, 48, 1), np.uint8), shifted), ann / "wrong" / f"{rows[0]['slice_id']}_label.nii.gz")
    capsys.readouterr()
    assert main(["al", "ingest", str(ann / "wrong"), "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"{rows[0]['slice_id']}_label.nii.gz: geometry differs" in err and "1.5 mm" in err
    assert main(["al", "train", "--state", str(state), "--quiet"]) == 2  # nothing annotated yet
    assert "no annotated slice yet" in capsys.readouterr().err
    assert main(["al", "ingest", str(ann), "--state", str(state)]) == 0
    assert "ingested 3 annotations; 0 selected slices still pending" in capsys.readouterr().out
    assert main(["al", "train", "--state", str(state), "--quiet"]) == 0
    assert main(["al", "select", "--state", str(state), "--budget", "2", "--strategy", "margin", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["al", "status", "--state", str(state), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["rounds"] == 2 and st["annotated"] == 3 and len(st["pending"]) == 2 and st["model"]
    assert main(["al", "status", "--state", str(state)]) == 0
    assert "annotated 3 (4.2%)" in capsys.readouterr().out
