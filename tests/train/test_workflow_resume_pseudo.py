"""The pseudo-label trainers (tag classifier, AGMM, DuPL) resume with the same final weights as an uninterrupted run.

Interrupted by a hook raising at a round's end (after its checkpoint is written), and for AGMM by
``kill -9`` of a subprocess; each kind also round-trips through the one model file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.errors import ConfigError
from medwss.pseudo import agmm_train, cams, dupl
from medwss.pseudo.nets import TinyFCN


def tiny_images(n: int = 6, size: int = 16, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Noisy squares (1, H, W) and their label maps (H, W) with classes 0, 1, 2."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        lab = np.zeros((size, size), np.int64)
        lab[3 + i % 3 : 9 + i % 3, 3:9] = 1
        if i % 2:
            lab[10:14, 9:14] = 2
        images.append((lab / 2 + rng.normal(0, 0.2, lab.shape))[None].astype(np.float32))
        labels.append(lab)
    return images, labels


def sparse_of(labels: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for lab in labels:
        s = np.full_like(lab, -1)
        s[::3, ::3] = lab[::3, ::3]  # a labelled grid: 1 pixel in 9
        out.append(s)
    return out


def interrupt_after(monkeypatch: pytest.MonkeyPatch, module: object, rounds: int) -> None:
    """Make `module`'s `fit` raise (like a killed job) at the end of round `rounds`, its checkpoint written."""
    real = module.fit  # type: ignore[attr-defined]

    def fit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def hook(row: dict) -> None:
            if row["round"] + 1 >= rounds:
                raise KeyboardInterrupt

        return real(*args, on_round_end=hook, **kwargs)

    monkeypatch.setattr(module, "fit", fit)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def tag_run(ckpt: Path | None, epochs: int = 4) -> TinyFCN:
    images, labels = tiny_images()
    xs = [cams.add_coords(im) for im in images]
    ts = [cams.patch_tags(lab, 3, 1) for lab in labels]
    return cams.train_tag_classifier(xs, ts, epochs, batch_size=4, width=4, seed=3, device="cpu", checkpoint=ckpt)


def test_tag_classifier_resume_is_bit_identical(tmp_path, monkeypatch):
    straight = tag_run(tmp_path / "a.pt")
    assert same(straight, tag_run(None))  # the checkpoint changes nothing
    with monkeypatch.context() as m:
        interrupt_after(m, cams, 2)
        with pytest.raises(KeyboardInterrupt):
            tag_run(tmp_path / "b.pt")
    assert same(straight, tag_run(tmp_path / "b.pt"))
    longer = tag_run(tmp_path / "b.pt", epochs=6)  # more epochs continue the run (epochs is run-only)
    assert same(longer, tag_run(None, epochs=6))
    path = cams.save_cam_model(tmp_path / "model.pt", straight, {"classes": ["bg", "a", "b"]})
    loaded, meta = cams.load_cam_model(path)
    assert same(straight, loaded) and meta["classes"] == ["bg", "a", "b"] and meta["coords"] is False


def agmm_run(ckpt: Path | None, lr: float = 1e-2) -> tuple[TinyFCN, list[float]]:
    images, labels = tiny_images()
    present = [np.array([True, True, bool(i % 2)]) for i in range(len(images))]
    return agmm_train.train_agmm(
        images, sparse_of(labels), 3, present, iterations=8, batch_size=2, lr=lr, width=4, seed=1, device="cpu",
        checkpoint=ckpt,
    )  # fmt: skip


def test_agmm_resume_is_bit_identical(tmp_path, monkeypatch):
    straight, history = agmm_run(tmp_path / "a.pt")
    ref, ref_history = agmm_run(None)
    assert same(straight, ref) and history == ref_history and len(history) == 8
    with monkeypatch.context() as m:
        interrupt_after(m, agmm_train, 3)
        with pytest.raises(KeyboardInterrupt):
            agmm_run(tmp_path / "b.pt")
    resumed, resumed_history = agmm_run(tmp_path / "b.pt")
    assert same(straight, resumed) and resumed_history == history  # the steps before the interruption too
    with pytest.raises(ConfigError, match=r"\(lr\)"):
        agmm_run(tmp_path / "b.pt", lr=0.1)
    path = agmm_train.save_agmm_model(tmp_path / "model.pt", straight, {"classes": ["bg", "a", "b"]})
    loaded, meta = agmm_train.load_agmm_model(path)
    assert same(straight, loaded) and meta["out_channels"] == 3
    with pytest.raises(Exception, match="not a 'pseudo_cam' one"):
        cams.load_cam_model(path)


def dupl_run(ckpt: Path | None) -> tuple[tuple[TinyFCN, TinyFCN], list[dict[str, float]]]:
    images, labels = tiny_images()
    initial = [np.where(np.random.default_rng(i).random(lab.shape) < 0.1, 0, lab) for i, lab in enumerate(labels)]
    cfg = dupl.DuPLConfig(iterations=8, warmup=3, width=4, batch_size=2, seed=2, device="cpu")
    return dupl.train_dupl(images, initial, 3, cfg, checkpoint=ckpt)


def test_dupl_resume_is_bit_identical(tmp_path, monkeypatch):
    (a, b), history = dupl_run(tmp_path / "a.pt")
    (ra, rb), ref_history = dupl_run(None)
    assert same(a, ra) and same(b, rb) and history == ref_history
    assert [round(h["tau"], 6) for h in history] == [round(dupl.dynamic_threshold(t, 8), 6) for t in range(8)]
    with monkeypatch.context() as m:
        interrupt_after(m, dupl, 5)  # after the warm-up: the loss-GMM filter and consistency term are on
        with pytest.raises(KeyboardInterrupt):
            dupl_run(tmp_path / "b.pt")
    (sa, sb), resumed_history = dupl_run(tmp_path / "b.pt")
    assert same(a, sa) and same(b, sb) and resumed_history == history
    path = dupl.save_students(tmp_path / "model.pt", (a, b), {"classes": ["bg", "a", "b"]})
    (la, lb), meta = dupl.load_students(path)
    assert same(a, la) and same(b, lb) and meta["classes"] == ["bg", "a", "b"]
    from medwss.train import load_model

    pair, record = load_model(path)
    assert record.kind == "pseudo_dupl" and isinstance(pair, dupl.StudentPair)
    images, _ = tiny_images()
    x = torch.from_numpy(images[0])[None]
    with torch.no_grad():
        assert torch.allclose(pair(x).sum(1), torch.ones(1, 16, 16), atol=1e-5)  # mean of the two softmaxes


_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from medwss.pseudo import agmm_train
from tests.train.test_workflow_resume_pseudo import agmm_run
real = agmm_train.fit
def slow_fit(*a, **kw):
    return real(*a, on_round_end=lambda row: time.sleep(float(sys.argv[2])), **kw)
agmm_train.fit = slow_fit
out = Path(sys.argv[1])
model, history = agmm_run(out / "checkpoint.pt")
torch.save(model.state_dict(), out / "final.pt")
"""


@pytest.mark.slow
def test_agmm_resume_after_kill_9_is_bit_identical(tmp_path):
    script = tmp_path / "run_agmm.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    run = lambda out, sleep: [sys.executable, str(script), str(out), str(sleep)]  # noqa: E731
    subprocess.run(run(tmp_path / "a", 0), check=True, env=env, timeout=300)
    proc = subprocess.Popen(run(tmp_path / "b", 0.3), env=env)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ckpt.exists():
        time.sleep(0.02)
    time.sleep(0.4)  # a round or two more
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "b" / "final.pt").exists()  # killed mid-run
    subprocess.run(run(tmp_path / "b", 0), check=True, env=env, timeout=300)
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
