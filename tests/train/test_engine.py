"""The engine: selection, plateau-aware early stopping, resume (bit-identical, also after kill -9), errors, AMP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from medwss.errors import ConfigError
from medwss.train import EngineConfig, fit
from tests.train.helpers import run

CFG = EngineConfig(epochs=6, progress=False, seed=3)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def scripted(values):  # noqa: ANN001, ANN201
    """A validation function returning the next of `values` each round."""
    it = iter(values)
    return lambda ctx: {"score": next(it)}


@pytest.mark.parametrize(("mode", "best"), [("max", 2), ("min", 4)])
def test_selection_picks_the_best_round_by_metric_and_direction(tmp_path, mode, best):
    values = [0.3, 0.5, 0.9, 0.4, 0.1, 0.6]
    snapshots = []
    cfg = CFG.model_copy(update={"monitor": "score", "mode": mode})
    model, res = run(tmp_path, cfg, validate=scripted(values), on_round_end=lambda row: snapshots.append(None))
    assert res.best_round == best and res.best_value == values[best] and res.best_epoch == best
    assert [r["score"] for r in res.history] == values
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["round"] for r in history] == list(range(6)) and history[best]["score"] == values[best]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ck["best"]["model"].items())  # best weights restored


def plateau_fit(tmp_path: Path, losses: list[float], patience: int = 2) -> list[dict]:
    """A run whose training loss per round is scripted and whose validation loss only gets worse."""
    w = nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)
    it = iter(losses)
    current = {"loss": 0.0}

    def step(batch, ctx):  # noqa: ANN001, ANN202
        return w * 0 + current["loss"]

    def data(epoch):  # noqa: ANN001, ANN202
        current["loss"] = next(it)
        return [0, 1]

    val = iter(range(100))
    cfg = EngineConfig(epochs=len(losses), patience=patience, monitor="val_loss", progress=False, plateau_tol=0.05)
    model = nn.Module()
    model.w = w  # type: ignore[assignment]
    res = fit(model, opt, step, data, cfg, validate=lambda ctx: {"val_loss": float(next(val))})
    return res.history, res.stopped_early


def test_early_stopping_does_not_fire_on_the_starting_plateau(tmp_path):
    history, stopped = plateau_fit(tmp_path, [0.69] * 12)  # INSIGHT's plateau: val loss never improves
    assert len(history) == 12 and not stopped


def test_early_stopping_fires_once_off_the_plateau(tmp_path):
    losses = [0.69, 0.69, 0.69, 0.60, 0.50, 0.40, 0.30, 0.20, 0.10, 0.05]
    history, stopped = plateau_fit(tmp_path, losses, patience=2)
    assert stopped and len(history) == 5  # left the plateau at round 3; patience 2 counts rounds 3 and 4


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    straight, ref = run(tmp_path / "a", CFG)

    def stop_after_two(row):  # noqa: ANN001, ANN202
        if row["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", CFG, on_round_end=stop_after_two)
    assert len(json.loads((tmp_path / "b" / "history.json").read_text())) == 2
    resumed, res = run(tmp_path / "b", CFG)
    assert same_weights(straight, resumed)
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref.history]


def test_resume_mid_epoch_every_n_steps_is_bit_identical(tmp_path):
    cfg = CFG.model_copy(update={"epochs": 3, "eval_every": 3})  # 4 batches an epoch: rounds end mid-epoch
    straight, ref = run(tmp_path / "a", cfg)

    def stop(row):  # noqa: ANN001, ANN202
        if row["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", cfg, on_round_end=stop)
    resumed, res = run(tmp_path / "b", cfg)
    assert same_weights(straight, resumed) and len(res.history) == len(ref.history) == 4


def test_max_steps_and_accumulation(tmp_path):
    cfg = EngineConfig(epochs=None, max_steps=5, accumulate=2, clip_grad_norm=1.0, progress=False)
    _, res = run(tmp_path, cfg)
    assert res.history[-1]["step"] == 5 and res.history[-1]["epoch"] == 2  # 2 steps an epoch (4 batches, 2 per step)


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical(tmp_path):
    cfg = json.dumps(CFG.model_dump(mode="json"))
    helper = str(Path(__file__).with_name("helpers.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    subprocess.run([sys.executable, helper, str(tmp_path / "a"), cfg, "0"], check=True, env=env, timeout=120)
    proc = subprocess.Popen([sys.executable, helper, str(tmp_path / "b"), cfg, "0.05"], env=env)
    history = tmp_path / "b" / "history.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "final.pt").exists()  # killed mid-run
    subprocess.run([sys.executable, helper, str(tmp_path / "b"), cfg, "0"], check=True, env=env, timeout=120)
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_incompatible_resume_names_the_changed_keys(tmp_path):
    run(tmp_path, CFG.model_copy(update={"epochs": 2}), run_config={"lr": 0.05, "seed": 3, "out": "x"})
    with pytest.raises(ConfigError, match=r"\(lr, seed\)") as err:
        run(tmp_path, CFG, run_config={"lr": 0.1, "seed": 4, "out": "y"})
    assert "checkpoint.pt" in str(err.value) and "\n" not in str(err.value)
    run(tmp_path, CFG, run_config={"lr": 0.05, "seed": 3, "out": "z"})  # a run-only key may change


def test_unreadable_checkpoint_is_a_config_error(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot resume"):
        run(tmp_path, CFG)


def test_amp_on_cpu_is_a_no_op(tmp_path):
    a, _ = run(tmp_path / "a", CFG.model_copy(update={"epochs": 2, "device": "cpu"}))
    b, _ = run(
        tmp_path / "b", CFG.model_copy(update={"epochs": 2, "device": "cpu", "amp": True, "amp_dtype": "float16"})
    )
    assert same_weights(a, b)


def test_two_models_two_optimisers_in_phases():
    d, g = nn.Linear(2, 1), nn.Linear(2, 2)
    opts = {"d": torch.optim.SGD(d.parameters(), lr=0.1), "g": torch.optim.SGD(g.parameters(), lr=0.1)}
    before = {k: v.clone() for k, v in {**d.state_dict(), **{"g" + k: v for k, v in g.state_dict().items()}}.items()}

    def d_step(x, ctx):  # noqa: ANN001, ANN202
        fake = ctx.models["g"](x).detach()
        return ctx.models["d"](fake).mean() - ctx.models["d"](x).mean()

    def g_step(x, ctx):  # noqa: ANN001, ANN202
        return -ctx.models["d"](ctx.models["g"](x)).mean()

    data = [torch.randn(4, 2, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    res = fit({"d": d, "g": g}, opts, [("d", d_step), ("g", g_step)], data, EngineConfig(epochs=2, progress=False))
    assert {"loss_d", "loss_g", "train_loss"} <= set(res.history[0])
    assert not torch.equal(before["weight"], d.weight) and not torch.equal(before["gweight"], g.weight)
    with pytest.raises(ConfigError, match="accumulation"):
        fit({"d": d, "g": g}, opts, [("d", d_step), ("g", g_step)], data, EngineConfig(epochs=1, accumulate=2))


def test_no_batches_is_an_error():
    m = nn.Linear(1, 1)
    with pytest.raises(ConfigError, match="no training batches"):
        fit(m, torch.optim.SGD(m.parameters(), lr=0.1), lambda b, c: b, [], EngineConfig(epochs=1, progress=False))


def test_a_monitor_that_is_never_logged_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="monitor 'val_dice'"):
        run(tmp_path, CFG.model_copy(update={"monitor": "val_dice"}))
