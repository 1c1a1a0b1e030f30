"""`medwss coin` end to end on two tiny phantom CT scans: classifier, COIN, masks, baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medwss.cli.main import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from medwss.data.phantoms import generate

    root = tmp_path_factory.mktemp("coin")
    return root, generate("ct", root / "ph", n=2, seed=0, scale=0.5, progress=False)


@pytest.mark.slow
def test_coin_commands_end_to_end(tiny):
    import nibabel as nib

    root, manifest = tiny
    clf, gen, seg, base = (root / n for n in ("clf", "gen", "seg", "base"))
    common = ["--train-split", "all", "--quiet"]
    assert (
        main(
            [
                "coin",
                "train-classifier",
                str(manifest),
                "--out",
                str(clf),
                "--epochs",
                "2",
                "--tumour-labels",
                "4",
                "--window=-160,240",
                *common,
            ]
        )
        == 0
    )
    spec = json.loads((clf / "run.json").read_text())["config"]["spec"]
    assert (clf / "classifier.pt").exists() and spec["labels"]["tumour"] == [4] and spec["roi"] == "kidney"
    assert (
        main(
            [
                "coin",
                "train",
                str(manifest),
                "--classifier",
                str(clf / "classifier.pt"),
                "--out",
                str(gen),
                "--iterations",
                "3",
                *common,
            ]
        )
        == 0
    )
    assert (gen / "generator.pt").exists() and json.loads((gen / "history.json").read_text())
    assert (
        main(
            [
                "coin",
                "segment",
                str(manifest),
                "--classifier",
                str(clf / "classifier.pt"),
                "--generator",
                str(gen / "generator.pt"),
                "--out",
                str(seg),
                "--opening",
                "1",
                "--largest",
                "--quiet",
            ]
        )
        == 0
    )
    for case in ("ct_000", "ct_001"):
        out = nib.load(seg / "masks" / f"{case}.nii.gz")
        src = nib.load(manifest.parent / "images" / f"{case}.nii.gz")
        assert out.shape == src.shape
        np.testing.assert_allclose(out.affine, src.affine)
        assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1}
    assert len(list((seg / "overlays").glob("*.png"))) == 2
    metrics = json.loads((seg / "run.json").read_text())["metrics"]
    assert 0 <= metrics["iou"] <= 1 and metrics["n_cases"] == 2
    assert (
        main(
            [
                "coin",
                "baselines",
                str(manifest),
                "--classifier",
                str(clf / "classifier.pt"),
                "--out",
                str(base),
                "--methods",
                "gradcam,occlusion",
                "--quiet",
            ]
        )
        == 0
    )
    res = json.loads((base / "baselines.json").read_text())
    assert set(res["methods"]) == {"gradcam", "occlusion"}
    assert (base / "masks" / "gradcam" / "ct_000.nii.gz").exists()


def test_coin_errors_are_one_line(tiny, tmp_path, capsys):
    root, manifest = tiny
    assert (
        main(
            [
                "coin",
                "segment",
                str(manifest),
                "--classifier",
                str(tmp_path / "none.pt"),
                "--generator",
                "x.pt",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert (
        main(
            [
                "coin",
                "train-classifier",
                str(manifest),
                "--out",
                str(tmp_path / "c"),
                "--roi-labels",
                "99",
                "--quiet",
                "--train-split",
                "all",
            ]
        )
        == 2
    )
    assert "no case gave slices" in capsys.readouterr().err
    assert (
        main(["coin", "baselines", str(manifest), "--classifier", "x.pt", "--out", str(tmp_path), "--split", "nope"])
        == 2
    )


def test_coin_training_resumes_from_the_output_folder(tiny, tmp_path, capsys):
    """A second run with the same settings resumes (a finished one reloads), other settings need --restart."""
    import torch

    from medwss.train import load_model

    _, manifest = tiny
    out = tmp_path / "clf"
    args = ["coin", "train-classifier", str(manifest), "--out", str(out), "--epochs", "1", "--size", "16",
            "--tumour-labels", "4", "--train-split", "all", "--quiet"]  # fmt: skip
    assert main(args) == 0 and (out / "classifier.ckpt").exists()
    first, record = load_model(out / "classifier.pt")
    assert record.kind == "coin_classifier"
    assert main(args) == 0
    again, _ = load_model(out / "classifier.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    capsys.readouterr()
    assert main([*args, "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "(lr)" in err and "\n" not in err.strip()
    assert main([*args, "--lr", "0.01", "--restart"]) == 0
