"""Largest connected component per class, pseudo labels and self-training rounds."""

from __future__ import annotations

import numpy as np

from medwss.data.labels import IGNORE
from medwss.io import load_volume
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.selftrain import largest_components, pseudo_labels
from tests.scribble.conftest import INPUT, SHAPE, TINY


def test_largest_component_per_class_in_the_volume_or_per_slice():
    lab = np.zeros((10, 10, 2), np.int64)
    lab[1:4, 1:4, 0] = 1  # class 1: 9 pixels on slice 0 ...
    lab[7, 7, 1] = 1  # ... and a stray pixel on slice 1
    lab[6:9, 0:2, :] = 2  # class 2: one component over both slices
    vol = largest_components(lab, 3, "volume")
    assert (vol == 1).sum() == 9 and vol[7, 7, 1] == 0 and (vol == 2).sum() == 12
    per_slice = largest_components(lab, 3, "slice")
    assert per_slice[7, 7, 1] == 1 and (per_slice == lab).all()
    assert largest_components(lab, 3, "none") is lab


def test_pseudo_labels_confident_largest_and_scribbles_kept():
    probs = np.zeros((2, 3, 6, 6), np.float32)
    probs[:, 0] = 1.0
    probs[0, :, 0:2, 0:2] = np.array([0.0, 0.95, 0.05])[:, None, None]  # class 1, confident
    probs[0, :, 5, 5] = [0.0, 0.95, 0.05]  # a stray class-1 pixel: outside the largest component
    probs[0, :, 3, 3] = [0.3, 0.6, 0.1]  # not confident
    probs[1, :, 0:2, 0:2] = np.array([0.0, 0.05, 0.95])[:, None, None]  # class 2 on a slice marking only 1
    marks = np.full((2, 6, 6), IGNORE, np.int64)
    marks[0, 4, 0], marks[0, 0, 0] = 2, 1
    marks[1, 0, 0] = 1
    out = pseudo_labels(probs, marks, 0.9, absent_unmarked=True)
    assert (out[0, 0:2, 0:2] == 1).all() and out[0, 5, 5] == IGNORE and out[0, 3, 3] == IGNORE
    assert out[0, 4, 0] == 2 and out[0, 4, 4] == 0  # the scribble, confident background
    assert out[1, 0, 0] == 1 and (out[1, 0:2, 0:2].ravel()[1:] == IGNORE).all()  # class 2 not marked there
    assert (pseudo_labels(probs, marks, 0.9, absent_unmarked=False)[1, 0, 1]) == 2


def test_self_training_round_trains_on_the_first_model_or_a_given_one(heart, tmp_path):
    from medwss.scribble.workflow import predict_cases, train_model

    cfg = ScribbleConfig(**INPUT, **TINY, slice_size=32, size_prior=(5.0, 300.0), self_training=1)
    summary = train_model(heart, cfg, tmp_path / "st", progress=False)
    assert (tmp_path / "st" / "round_0" / "model.pt").exists() and (tmp_path / "st" / "model.pt").exists()
    assert summary["train_samples"] == 16
    given = cfg.model_copy(update={"pseudo_model": str(tmp_path / "st" / "round_0" / "model.pt")})
    train_model(heart, given, tmp_path / "given", progress=False)
    assert not (tmp_path / "given" / "round_0").exists() and (tmp_path / "given" / "model.pt").exists()
    test = heart.split("test")
    predict_cases(heart, test, [tmp_path / "st" / "model.pt"], tmp_path, progress=False, largest_component="volume")
    pred = load_volume(tmp_path / "predictions" / f"{test[0].case_id}.nii.gz").array
    assert pred.shape == SHAPE and (largest_components(pred, 4, "volume") == pred).all()
