"""Annotation rounds on disk: a round trip, no slice selected twice, and interruption at any step loses nothing."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from medwss.active import export as export_mod
from medwss.active.pool import SliceReader
from medwss.active.rounds import ingest_annotations, init_project, project_status, select_round, train_model
from medwss.active.state import ALState
from medwss.data.labels import LabelSpec, save_label_map
from medwss.errors import InvalidDataError
from medwss.io import load_volume, save_nifti
from medwss.io.volume import Volume
from tests.active.conftest import CLASSES, tiny_config


def annotate(state: ALState, export: Path, out: Path, scribble: bool = False) -> list[str]:
    """The scripted annotator: the ground truth of each exported slice, saved on the exported grid
    (full masks as medwss writes labels, int16 with -1; scribbles as a viewer's uint8 with 255)."""
    refs = {r.slice_id: r for r in state.pool.refs}
    reader = SliceReader(None, LabelSpec.from_groups(CLASSES))
    with open(export / "selection.csv") as fh:
        ids = [row["slice_id"] for row in csv.DictReader(fh)]
    for sid in ids:
        img = load_volume(export / "images" / f"{sid}.nii.gz")
        lab = reader.label(refs[sid])
        if scribble:
            scr = lab.astype(np.uint8)
            scr[::2] = 255
            save_nifti(Volume(scr[:, :, None], img.affine), out / f"{sid}_label.nii.gz")
        else:
            save_label_map(lab[:, :, None], out / f"{sid}_label.nii.gz", img.affine)
    return ids


@pytest.fixture
def project(ct_manifest, tmp_path):
    state, skipped = init_project(ct_manifest, tmp_path / "state", tiny_config(strategy="random"), progress=False)
    assert not skipped
    return state


def test_round_trip_and_never_twice(project, tmp_path):
    r1 = select_round(project, budget="3", progress=False)
    assert r1["round"] == 1 and len(r1["selected"]) == 3
    with pytest.raises(InvalidDataError, match="await annotation"):
        select_round(project, budget="2", progress=False)
    ids = annotate(project, Path(r1["export"]), tmp_path / "ann1")
    got, rejected = ingest_annotations(ALState(project.folder), tmp_path / "ann1")
    assert sorted(got) == sorted(ids) and not rejected
    state = ALState(project.folder)
    metrics = train_model(state, epochs=1, progress=False)
    assert metrics["annotated"] == 3 and metrics["loss"] == "ce_dice"
    assert (state.folder / "model" / "segmenter.pt").exists() and (state.folder / "model" / "run.json").exists()
    r2 = select_round(state, budget="2%", strategy="entropy", progress=False)
    assert r2["model_used"] and len(r2["selected"]) == 2 and not set(r2["selected"]) & set(r1["selected"])
    annotate(state, Path(r2["export"]), tmp_path / "ann2", scribble=True)
    ingest_annotations(state, tmp_path / "ann2")
    sid = r2["selected"][0]
    stored = load_volume(state.folder / "labels" / f"{sid}.nii.gz")  # what medwss writes: int16, -1
    exported = load_volume(Path(r2["export"]) / "images" / f"{sid}.nii.gz")
    assert stored.array.dtype == np.int16 and stored.array.min() == -1 and np.allclose(stored.affine, exported.affine)
    lab, bounds = ALState(project.folder).load_annotation(sid)
    assert lab.shape == (48, 48) and (lab == -1).sum() == 24 * 48 and bounds is not None and bounds.shape == (4, 2)
    r3 = select_round(ALState(project.folder), budget="10", strategy="contrastive_coreset", progress=False)
    everything = r1["selected"] + r2["selected"] + r3["selected"]
    assert len(everything) == len(set(everything)) == 15
    st = project_status(ALState(project.folder))
    assert (
        st["rounds"] == 3 and st["annotated"] == 5 and st["kinds"] == ["full", "scribble"] and len(st["pending"]) == 10
    )
    with pytest.raises(InvalidDataError, match="exceeds"):
        select_round(ALState(project.folder), budget="82", allow_pending=True, progress=False)


def test_interrupted_select_reruns_to_the_same_round(project, tmp_path, monkeypatch):
    twin = tmp_path / "twin"
    shutil.copytree(project.folder, twin)
    expected = select_round(ALState(twin), budget="4", strategy="coreset", progress=False)["selected"]
    calls = {"n": 0}
    real = export_mod.preview_png

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export_mod, "preview_png", crash)
    with pytest.raises(KeyboardInterrupt):
        select_round(project, budget="4", strategy="coreset", progress=False)
    state = ALState(project.folder)
    assert state.rounds == []  # nothing recorded, half an export on disk
    monkeypatch.setattr(export_mod, "preview_png", real)
    rec = select_round(state, budget="4", strategy="coreset", progress=False)
    assert rec["selected"] == expected and len(list(Path(rec["export"], "images").iterdir())) == 4


def test_interrupted_ingest_keeps_what_it_recorded(project, tmp_path, monkeypatch):
    rec = select_round(project, budget="3", progress=False)
    annotate(project, Path(rec["export"]), tmp_path / "ann")
    calls = {"n": 0}
    real = ALState.add_annotation

    def crash(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ALState, "add_annotation", crash)
    with pytest.raises(RuntimeError):
        ingest_annotations(ALState(project.folder), tmp_path / "ann")
    assert len(ALState(project.folder).annotations) == 1
    monkeypatch.setattr(ALState, "add_annotation", real)
    ingest_annotations(ALState(project.folder), tmp_path / "ann")
    state = ALState(project.folder)
    assert len(state.annotations) == 3 and state.pending_ids() == []


def test_interrupted_train_resumes_from_its_checkpoint(project, tmp_path, monkeypatch):
    import medwss.train.engine as engine

    rec = select_round(project, budget="2", progress=False)
    annotate(project, Path(rec["export"]), tmp_path / "ann")
    ingest_annotations(project, tmp_path / "ann")
    real = engine.save_checkpoint
    calls = {"n": 0}

    def crash(path, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path, state)

    monkeypatch.setattr(engine, "save_checkpoint", crash)  # the segmenter trains on the one engine
    with pytest.raises(KeyboardInterrupt):
        train_model(ALState(project.folder), epochs=4, progress=False)
    ckpts = list((project.folder / "model").glob("train_*.ckpt"))
    assert len(ckpts) == 1 and not (project.folder / "model" / "segmenter.pt").exists()
    import torch

    assert len(torch.load(ckpts[0], weights_only=True)["engine"]["history"]) == 2
    monkeypatch.setattr(engine, "save_checkpoint", real)
    train_model(ALState(project.folder), epochs=4, progress=False)
    assert (project.folder / "model" / "segmenter.pt").exists() and not ckpts[0].exists()
