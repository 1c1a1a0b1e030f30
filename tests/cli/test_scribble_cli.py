"""`medwss scribble make|train|predict|shift` end to end on a tiny multi-site MRI phantom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medwss.cli.main import main

TINY_YAML = """
supervision: {supervision}
size_weight: {size_weight}
channels: [4, 8]
epochs: 1
batch_size: 8
augment: false
crop_mm: 32.0
spacing_mm: 2.0
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    from medwss.data.phantoms import generate

    return generate("mri", tmp_path_factory.mktemp("mri"), n=6, seed=1, scale=0.5, progress=False)


def _yaml(tmp: Path, name: str, supervision: str = "weak", size_weight: float = 0.01) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(TINY_YAML.format(supervision=supervision, size_weight=size_weight))
    return p


def test_make_train_predict(manifest, tmp_path, capsys):
    assert (
        main(
            [
                "scribble",
                "make",
                str(manifest),
                "--out",
                str(tmp_path / "weak"),
                "--kind",
                "circle",
                "--option",
                "arc=0.5",
                "--quiet",
            ]
        )
        == 0
    )
    weak_manifest = tmp_path / "weak" / "manifest.csv"
    assert weak_manifest.exists() and len(list((tmp_path / "weak" / "scribbles").glob("*.nii.gz"))) == 6
    assert json.loads((tmp_path / "weak" / "run.json").read_text())["config"]["options"] == {"arc": 0.5}
    cfg = _yaml(tmp_path, "weak")
    assert (
        main(["scribble", "train", str(weak_manifest), "--out", str(tmp_path / "m"), "--config", str(cfg), "--quiet"])
        == 0
    )
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["config"]["supervision"] == "weak" and run["config"]["epochs"] == 1
    assert (
        main(
            [
                "scribble",
                "predict",
                str(weak_manifest),
                "--model",
                str(tmp_path / "m"),
                "--out",
                str(tmp_path / "p"),
                "--split",
                "test",
                "--quiet",
            ]
        )
        == 0
    )
    n_test = sum(1 for line in weak_manifest.read_text().splitlines()[1:] if ",test," in line)
    assert len(list((tmp_path / "p" / "predictions").glob("*.nii.gz"))) == n_test
    assert "predictions for" in capsys.readouterr().out


@pytest.mark.slow
def test_train_flags_override_and_ensemble(manifest, tmp_path):
    cfg = _yaml(tmp_path, "weak")
    code = main(
        [
            "scribble",
            "train",
            str(manifest),
            "--out",
            str(tmp_path / "e"),
            "--config",
            str(cfg),
            "--ensemble",
            "2",
            "--bounds",
            "upper",
            "--quiet",
        ]
    )
    assert code == 0
    assert (tmp_path / "e" / "member_0" / "model.pt").exists() and (tmp_path / "e" / "member_1" / "model.pt").exists()
    assert json.loads((tmp_path / "e" / "run.json").read_text())["config"]["bounds"] == "upper"


def test_errors_are_one_line(manifest, tmp_path, capsys):
    assert main(["scribble", "predict", str(manifest), "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("size_wieght: 1\n")
    assert main(["scribble", "train", str(manifest), "--out", str(tmp_path / "x"), "--config", str(bad)]) == 2
    assert "size_wieght" in capsys.readouterr().err
    assert (
        main(
            [
                "scribble",
                "shift",
                str(manifest),
                "--out",
                str(tmp_path),
                "--train-sites",
                "site_z",
                "--setting",
                f"w={_yaml(tmp_path, 'w')}",
            ]
        )
        == 2
    )
    assert "site_z" in capsys.readouterr().err


@pytest.mark.slow
def test_shift_writes_report(manifest, tmp_path):
    weak, full = _yaml(tmp_path, "weak"), _yaml(tmp_path, "full", "full", 0.0)
    code = main(
        [
            "scribble",
            "shift",
            str(manifest),
            "--out",
            str(tmp_path / "s"),
            "--train-sites",
            "site_a,site_b",
            "--setting",
            f"weak={weak}",
            "--setting",
            f"full={full}",
            "--ensemble",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    for name in ("report.html", "report.md", "report.json", "cases.csv", "run.json"):
        assert (tmp_path / "s" / name).exists()
    rec = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rec["test_sites"] == ["site_c"] and rec["k"] == 2
    models = {(r["setting"], r["model"]) for r in rec["results"]}
    assert ("weak", "ensemble of 2") in models and ("full", "single (mean of 2)") in models
    assert "out_of_domain" in (tmp_path / "s" / "report.md").read_text()
    assert (
        len(list((tmp_path / "s" / "weak" / "ensemble" / "predictions").glob("*.nii.gz")))
        == rec["counts"]["in_domain_test"] + rec["counts"]["out_of_domain_test"]
    )
