"""The segmenter trainer and the scribble workflow resume after an interruption with the same final weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.errors import ConfigError, UnsupportedFormatError
from medwss.seg.train import SegTrainConfig, load_segmenter, save_segmenter, train_segmenter
from tests.seg.test_train import disc_images
from tests.train.test_workflow_resume import Interrupted

CFG = SegTrainConfig(channels=(4, 8), epochs=3, batch_size=3, size_weight=0.005, size_warmup=2, device="cpu")


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def strip(history):  # noqa: ANN001, ANN201
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.parametrize("with_val", [False, True])
def test_segmenter_resume_gives_the_same_final_weights(tmp_path, with_val):
    data, val = disc_images(6, 0, weak=True), disc_images(2, 1) if with_val else None
    straight, ref = train_segmenter(data, CFG, val, checkpoint=tmp_path / "a.pt", progress=False)
    with pytest.raises(KeyboardInterrupt):  # killed in the second epoch (6 samples an epoch, augmented)
        train_segmenter(Interrupted(data, len(data) + 4), CFG, val, checkpoint=tmp_path / "b.pt", progress=False)
    torch.manual_seed(7)  # the fresh model's initialisation does not matter when resuming
    resumed, hist = train_segmenter(data, CFG, val, checkpoint=tmp_path / "b.pt", progress=False)
    assert same(straight, resumed)
    assert json.dumps(strip(hist)) == json.dumps(strip(ref))
    if with_val:  # the kept epoch is the one of best validation Dice
        assert len(hist) == 3 and all("val_dice" in r for r in hist)


def test_segmenter_selects_best_val_dice_else_lowest_loss(tmp_path):
    data, val = disc_images(6, 0), disc_images(2, 1)
    cfg = CFG.model_copy(update={"epochs": 4, "augment": False})
    picked, hist = train_segmenter(data, cfg, val, checkpoint=tmp_path / "v.pt", progress=False)
    best = int(np.argmax([r["val_dice"] for r in hist]))
    blob = torch.load(tmp_path / "v.pt", weights_only=True)
    assert blob["engine"]["selection"]["best_round"] == best
    assert all(torch.equal(v, picked.state_dict()[k]) for k, v in blob["best"]["model"].items())
    _, hist = train_segmenter(data, cfg, None, checkpoint=tmp_path / "l.pt", progress=False)
    blob = torch.load(tmp_path / "l.pt", weights_only=True)
    assert blob["engine"]["selection"]["best_round"] == int(np.argmin([r["loss"] for r in hist]))


def test_segmenter_more_epochs_continue_other_settings_refuse(tmp_path):
    data = disc_images(6, 0)
    cfg = CFG.model_copy(update={"epochs": 1})
    train_segmenter(data, cfg, checkpoint=tmp_path / "c.pt", progress=False)
    _, hist = train_segmenter(data, CFG, checkpoint=tmp_path / "c.pt", progress=False)
    assert len(hist) == 3
    with pytest.raises(ConfigError, match=r"\(lr\)"):
        train_segmenter(data, CFG.model_copy(update={"lr": 0.1}), checkpoint=tmp_path / "c.pt", progress=False)


def test_segmenter_model_file_and_older_format(tmp_path):
    from medwss.train import load_model, read_model, save_model

    model, _ = train_segmenter(disc_images(3, 0), CFG.model_copy(update={"epochs": 1}), progress=False)
    save_segmenter(model, CFG, tmp_path / "m.pt", meta={"classes": ["bg", "disc"]})
    assert read_model(tmp_path / "m.pt").kind == "segmenter"
    loaded, record = load_model(tmp_path / "m.pt")  # dispatched on kind, no import needed
    assert same(model, loaded) and record.meta["classes"] == ["bg", "disc"]
    # the older save_segmenter format: {"config", "state_dict", "meta"}, converted on load
    torch.save({"config": CFG.model_dump(), "state_dict": model.state_dict(), "meta": {"a": 1}}, tmp_path / "old.pt")
    old, cfg, meta = load_segmenter(tmp_path / "old.pt")
    assert same(model, old) and cfg == CFG and meta == {"a": 1}
    assert read_model(tmp_path / "old.pt").legacy is not None
    save_model(tmp_path / "lin.pt", "encoder", torch.nn.Linear(2, 2), {})
    with pytest.raises(UnsupportedFormatError, match="not a 'segmenter' one"):
        load_segmenter(tmp_path / "lin.pt")


# -- the scribble workflow ---------------------------------------------------------------------------------------------

TINY = {"channels": (4, 8), "epochs": 2, "batch_size": 8, "crop_mm": 32.0, "spacing_mm": 2.0, "device": "cpu"}


@pytest.fixture(scope="module")
def manifest(mri_manifest):  # noqa: ANN001, ANN201
    from medwss.data.manifest import load_manifest

    return load_manifest(mri_manifest)


@pytest.fixture(scope="module")
def mri_manifest(tmp_path_factory):  # noqa: ANN001, ANN201
    from medwss.data.phantoms import generate

    return generate("mri", tmp_path_factory.mktemp("mri"), n=6, seed=0, scale=0.5, progress=False)


def test_scribble_training_resumes_with_the_same_weights(manifest, tmp_path, monkeypatch):
    import medwss.seg.train as seg_train
    from medwss.scribble.config import ScribbleConfig
    from medwss.scribble.workflow import train_model

    cfg = ScribbleConfig(**TINY, size_warmup=1)
    train_model(manifest, cfg, tmp_path / "a", progress=False)
    straight, _, _ = load_segmenter(tmp_path / "a" / "model.pt")
    assert len(json.loads((tmp_path / "a" / "history.json").read_text())) == 2
    n_batches = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["engine"]["step"] // 2  # per epoch
    real, calls = seg_train.batch_loss, {"n": 0}

    def dying(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > n_batches + 1:  # killed one batch into the second epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(seg_train, "batch_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        train_model(manifest, cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "model.pt").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["engine"]["epoch"] == 1
    monkeypatch.setattr(seg_train, "batch_loss", real)
    with pytest.raises(ConfigError, match="size_weight"):
        train_model(manifest, cfg.model_copy(update={"size_weight": 0.5}), tmp_path / "b", progress=False)
    summary = train_model(manifest, cfg, tmp_path / "b", progress=False)
    resumed, _, meta = load_segmenter(tmp_path / "b" / "model.pt")
    assert same(straight, resumed) and meta["scribble"]["size_warmup"] == 1
    assert summary["final_loss"] == json.loads((tmp_path / "a" / "history.json").read_text())[-1]["loss"]


# -- kill -9 -----------------------------------------------------------------------------------------------------------

_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
import medwss.seg.train as st
from tests.seg.test_train import disc_images
from tests.train.test_workflow_resume_seg import CFG
real = st.batch_loss
def slow(*a, **k):
    time.sleep(float(sys.argv[2]))
    return real(*a, **k)
st.batch_loss = slow
cfg = CFG.model_copy(update={"epochs": 4})
model, _ = st.train_segmenter(disc_images(6, 0), cfg, checkpoint=sys.argv[1] + "/ckpt.pt", progress=False)
torch.save(model.state_dict(), sys.argv[1] + "/final.pt")
"""


@pytest.mark.slow
def test_segmenter_resume_after_kill_9(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    run = lambda d, s: [sys.executable, "-c", _SCRIPT, str(d), s]  # noqa: E731
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    subprocess.run(run(tmp_path / "a", "0"), check=True, env=env, timeout=300)
    proc = subprocess.Popen(run(tmp_path / "b", "0.3"), env=env)
    ckpt, deadline = Path(tmp_path / "b" / "ckpt.pt"), time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["engine"]["epoch"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "final.pt").exists()  # killed mid-run
    subprocess.run(run(tmp_path / "b", "0"), check=True, env=env, timeout=300)
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
