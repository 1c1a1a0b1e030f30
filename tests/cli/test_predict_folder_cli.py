"""``predict -i DIR -o DIR`` without a manifest: scribble predict and coin segment on tiny phantoms."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medwss.cli.main import main

TINY_3D = """
supervision: full
channels: [4, 8]
spatial_dims: 3
epochs: 1
batch_size: 8
augment: false
crop_mm: 32.0
spacing_mm: 2.0
use_zones: false
"""


@pytest.fixture(scope="module")
def scribble_model(tmp_path_factory) -> tuple[Path, Path]:
    from medwss.data.phantoms import generate

    root = tmp_path_factory.mktemp("folder_scribble")
    manifest = generate("mri", root / "ph", n=6, seed=1, scale=0.5, progress=False)
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY_3D)
    assert main(["scribble", "train", str(manifest), "--out", str(root / "m"), "--config", str(cfg), "--quiet"]) == 0
    return manifest, root / "m"


@pytest.mark.slow
def test_scribble_predict_folder_in_folder_out_matches_the_manifest_form(scribble_model, tmp_path, capsys):
    import medwss.train as tr
    from medwss.io import load_volume

    manifest, model = scribble_model
    meta = tr.load_model(model / "model.pt")[1].meta
    assert len(meta["patch_size"]) == 3  # the training patch size, used as the sliding window
    images = manifest.parent / "images"
    inp = tmp_path / "in"
    inp.mkdir()
    for case in ("mri_000", "mri_001"):
        for ch, name in enumerate(("t2w", "adc", "hbv")):  # nnU-Net channels = the model's sequences in order
            os.symlink(images / f"{case}_{name}.nii.gz", inp / f"{case}_{ch:04d}.nii.gz")
    (inp / "broken_0000.nii.gz").write_bytes(b"not a nifti")
    for ch in (1, 2):
        os.symlink(images / "mri_000_adc.nii.gz", inp / f"broken_{ch:04d}.nii.gz")
    out = tmp_path / "out"
    code = main(["scribble", "predict", "-i", str(inp), "--model", str(model), "-o", str(out), "--device", "cpu",
                 "--format", "nifti", "--format", "slicer", "--quiet"])  # fmt: skip
    assert code == 3  # broken failed, the others predicted
    text = capsys.readouterr().out
    assert "predictions for 2 case(s)" in text and "skipped broken_0000.nii.gz" in text
    assert (out / "mri_000.nii.gz").exists() and (out / "mri_001_labels.ctbl").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["input"] == str(inp) and run["metrics"]["failed"][0]["case_id"] == "broken_0000.nii.gz"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scribble", "predict", "-i", str(empty), "--model", str(model), "-o", str(tmp_path / "o")]) == 2
    assert "no image in this folder" in capsys.readouterr().err
    ref = tmp_path / "ref"
    code = main(["scribble", "predict", str(manifest), "--model", str(model), "--out", str(ref), "--device", "cpu",
                 "--quiet"])  # fmt: skip
    assert code == 0
    for case in ("mri_000", "mri_001"):
        a, b = load_volume(out / f"{case}.nii.gz"), load_volume(ref / "predictions" / f"{case}.nii.gz")
        np.testing.assert_allclose(a.array, b.array, atol=1e-6)
        np.testing.assert_allclose(a.affine, b.affine)


def test_scribble_predict_refuses_a_manifest_and_a_folder(tmp_path, capsys):
    model = tmp_path / "model.pt"
    manifest = tmp_path / "manifest.csv"
    args = ["scribble", "predict", str(manifest), "-i", str(tmp_path), "--model", str(model), "-o", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not both" in err and "\n" not in err.strip()
    assert main(["scribble", "predict", "--model", str(model), "-o", str(tmp_path)]) == 2
    assert "give a manifest or -i" in capsys.readouterr().err


@pytest.mark.slow
def test_coin_segment_folder_in_folder_out(tmp_path, capsys):
    import nibabel as nib

    from medwss.data.phantoms import generate

    manifest = generate("ct", tmp_path / "ph", n=2, seed=0, scale=0.5, progress=False)
    clf, gen = tmp_path / "clf", tmp_path / "gen"
    common = ["--train-split", "all", "--quiet"]
    assert main(["coin", "train-classifier", str(manifest), "--out", str(clf), "--epochs", "1", "--size", "16",
                 "--tumour-labels", "4", *common]) == 0  # fmt: skip
    assert main(["coin", "train", str(manifest), "--classifier", str(clf / "classifier.pt"), "--out", str(gen),
                 "--iterations", "2", "--batch-size", "4", *common]) == 0  # fmt: skip
    inp = manifest.parent / "images"
    out = tmp_path / "out"
    args = ["coin", "segment", "-i", str(inp), "--classifier", str(clf / "classifier.pt"),
            "--generator", str(gen / "generator.pt"), "-o", str(out), "--format", "slicer", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "masks for 2 case(s)" in capsys.readouterr().out
    for case in ("ct_000", "ct_001"):
        mask, src = nib.load(out / f"{case}.nii.gz"), nib.load(inp / f"{case}.nii.gz")
        assert mask.shape == src.shape and (out / f"{case}.ctbl").exists()
        np.testing.assert_allclose(mask.affine, src.affine)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["input"] == str(inp) and run["config"]["formats"] == ["slicer"]
    assert main([*args[:2], str(manifest), *args[2:]]) == 2
    assert "not both" in capsys.readouterr().err
