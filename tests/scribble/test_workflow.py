"""Train, predict, ensemble: files written, predictions on the T2 grid, ensembles average, resume guarded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medwss.data.manifest import load_manifest
from medwss.errors import ConfigError
from medwss.io import load_volume
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.workflow import load_members, predict_cases, select, train_ensemble, train_model

TINY = {"channels": (4, 8), "epochs": 1, "batch_size": 8, "augment": False, "crop_mm": 32.0, "spacing_mm": 2.0}


@pytest.fixture(scope="module")
def manifest(mri_manifest):
    return load_manifest(mri_manifest)


@pytest.mark.parametrize(
    ("dims", "network"),
    [pytest.param(2, "unet", marks=pytest.mark.slow), (3, "unet"), pytest.param(2, "dynunet", marks=pytest.mark.slow)],
)
def test_train_then_predict_on_the_t2_grid(manifest, tmp_path, dims, network):
    prior = (10.0, 150.0) if dims == 2 else (100.0, 2000.0)
    tiny = {**TINY, "channels": (4, 8, 16)} if network == "dynunet" else TINY
    cfg = ScribbleConfig(**tiny, network=network, spatial_dims=dims, size_warmup=1, size_prior=prior)
    summary = train_model(manifest, cfg, tmp_path, progress=False)
    assert summary["train_cases"] == len(manifest.split("train")) and summary["failed"] == 0
    for name in ("model.pt", "checkpoint.pt", "history.json", "config.json"):
        assert (tmp_path / name).exists()
    assert not (tmp_path / "failures.csv").exists()  # the one failure log, only when a case failed
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1
    cases = manifest.cases[:3]
    out = predict_cases(manifest, cases, [tmp_path / "model.pt"], tmp_path / "pred", progress=False)
    assert out == {"done": 3, "skipped": 0, "failed": []}
    for c in cases:
        pred = load_volume(tmp_path / "pred" / "predictions" / f"{c.case_id}.nii.gz")
        t2 = load_volume(c.images["t2"])
        assert pred.shape == t2.shape and pred.array.dtype == np.float32
        np.testing.assert_allclose(pred.affine, t2.affine, atol=1e-5)
        assert pred.array.min() >= 0.0 and pred.array.max() <= 1.0
        assert pred.array[0, 0, 0] == 0.0  # outside the 32 mm crop
    again = predict_cases(manifest, cases, [tmp_path / "model.pt"], tmp_path / "pred", progress=False)
    assert again["skipped"] == 3  # resume: existing predictions kept


@pytest.mark.slow
def test_ensemble_averages_members(manifest, tmp_path):
    cfg = ScribbleConfig(**TINY)
    train = select(manifest.cases, ["train"])
    paths = train_ensemble(manifest, cfg, tmp_path / "ens", 2, train, [], progress=False)
    assert [p.parent.name for p in paths] == ["member_0", "member_1"]
    seeds = [m[2].seed for m in load_members(paths)]
    assert seeds == [0, 1]
    case = manifest.cases[:1]
    maps = []
    for i, p in enumerate(paths):
        predict_cases(manifest, case, [p], tmp_path / f"m{i}", progress=False)
        maps.append(load_volume(tmp_path / f"m{i}" / "predictions" / f"{case[0].case_id}.nii.gz").array)
    predict_cases(manifest, case, paths, tmp_path / "avg", progress=False)
    avg = load_volume(tmp_path / "avg" / "predictions" / f"{case[0].case_id}.nii.gz").array
    assert not np.allclose(maps[0], maps[1])
    np.testing.assert_allclose(avg, (maps[0] + maps[1]) / 2, atol=1e-3)


def test_resume_refuses_other_settings(manifest, tmp_path):
    cfg = ScribbleConfig(**TINY)
    train_model(manifest, cfg, tmp_path, val_cases=[], progress=False)
    with pytest.raises(ConfigError, match="size_weight"):
        train_model(manifest, cfg.model_copy(update={"size_weight": 0.5}), tmp_path, val_cases=[], progress=False)
    more = cfg.model_copy(update={"epochs": 2})  # more epochs of the same run: refused too (epochs differ)
    with pytest.raises(ConfigError, match="epochs"):
        train_model(manifest, more, tmp_path, val_cases=[], progress=False)


def test_prediction_failure_is_reported(manifest, tmp_path):
    import dataclasses

    cfg = ScribbleConfig(**TINY)
    train_model(manifest, cfg, tmp_path, val_cases=[], progress=False)
    broken = dataclasses.replace(manifest.cases[0], images={**manifest.cases[0].images, "hbv": tmp_path / "x.nii.gz"})
    out = predict_cases(manifest, [broken, manifest.cases[1]], [tmp_path / "model.pt"], tmp_path / "p", progress=False)
    assert out["done"] == 1 and out["failed"][0]["case_id"] == broken.case_id
