"""AL state files: paths that work from any directory, and damaged files refused in one line naming them."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from medwss.cli.main import main

CFG = {"classes": [[1], [2, 3], [7]], "num_classes": 4, "thumb_size": 16, "device": "cpu"}


@pytest.fixture
def project(ct_manifest, tmp_path, monkeypatch) -> Path:
    """A state made by ``al init`` with a manifest path relative to the working directory, one round selected."""
    data = tmp_path / "data"
    shutil.copytree(ct_manifest.parent, data)
    rows = list(csv.DictReader((data / ct_manifest.name).open()))[:1]
    with (data / "one.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "al.yaml").write_text(yaml.safe_dump(CFG))
    monkeypatch.chdir(tmp_path)
    assert main(["al", "init", "data/one.csv", "--state", "state", "--config", "al.yaml", "--quiet"]) == 0
    argv = ["al", "select", "--state", "state", "--budget", "1", "--strategy", "random", "--quiet"]
    assert main(argv) == 0
    return tmp_path / "state"


def test_ingest_from_another_directory_accepts_a_valid_annotation(project, tmp_path, monkeypatch, capsys):
    from medwss.io import load_volume, save_nifti
    from medwss.io.volume import Volume

    pool = list(csv.DictReader((project / "pool.csv").open()))
    assert all(os.path.isabs(r["image"]) and os.path.isabs(r["label"]) for r in pool)
    assert os.path.isabs(json.loads((project / "source.json").read_text())["manifest"])
    export = project / "rounds" / "round_001" / "images"
    (img,) = export.glob("*.nii.gz")
    ann = tmp_path / "ann"
    exported = load_volume(img)
    save_nifti(Volume(np.ones(exported.shape, np.uint8), exported.affine), ann / img.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["al", "ingest", str(ann), "--state", str(project)]) == 0
    assert "ingested 1 annotation" in capsys.readouterr().out


def test_a_folder_with_cwd_relative_paths_still_reads(project, tmp_path, monkeypatch):
    from medwss.active.state import ALState

    rows = list(csv.DictReader((project / "pool.csv").open()))
    for r in rows:  # as written before paths were stored absolute: relative to the directory of `al init`
        r["image"], r["label"] = os.path.relpath(r["image"], tmp_path), os.path.relpath(r["label"], tmp_path)
    with (project / "pool.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert Path(ALState(project).pool.refs[0].image).is_file()  # from the directory of `al init`


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("config.json", "[1, 2]", "not an active-learning config"),
        ("config.json", '{"num_classes": "many"}', "not a valid active-learning config"),
        ("rounds.json", "{not json", "not valid JSON"),
        ("rounds.json", '{"round": 1}', "not a list of rounds"),
        ("annotations.json", "[]", "not a map of slice id"),
        ("pool.csv", "slice_id,case_id\nx,y\n", "not a slice pool table"),
        ("pool_thumbs.npy", "garbage", "not a thumbnail array"),
    ],
)
def test_a_damaged_state_file_is_one_line_naming_it(project, name, content, expect, capsys):
    (project / name).write_text(content)
    assert main(["al", "status", "--state", str(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(project / name) in err[0] and expect in err[0] and "Traceback" not in err[0]
