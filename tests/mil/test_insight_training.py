"""INSIGHT's training: input standardisation, bag augmentation, the paper's block, learning context."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.errors import ConfigError
from medwss.mil.base import Bag
from medwss.mil.data import LabelledBag
from medwss.mil.registry import create_aggregator
from medwss.mil.train import MILTrainConfig, augment_bag, input_norm, turn_grid


def _bag(n: int = 12, c: int = 6, shape: tuple[int, int] = (3, 5), tokens: bool = False) -> Bag:
    g = torch.Generator().manual_seed(0)
    cells = torch.randperm(shape[0] * shape[1], generator=g)[:n]
    grid = torch.stack([cells // shape[1], cells % shape[1]], 1)
    tok = torch.randn(n, c, 2, 3, generator=g) if tokens else None
    return Bag(torch.randn(n, c, generator=g), grid, shape, tok)


def _dense(bag: Bag) -> torch.Tensor:
    out = torch.full(bag.grid_shape, -1, dtype=torch.long)
    out[bag.grid_index[:, 0], bag.grid_index[:, 1]] = torch.arange(len(bag))
    return out


def test_turn_grid_matches_numpy_rotation_and_flip() -> None:
    bag = _bag(tokens=True)
    for k in range(4):
        for flip in (False, True):
            turned = turn_grid(bag, k, flip)
            expected = np.rot90(_dense(bag).numpy(), k)
            expected = expected[:, ::-1] if flip else expected
            np.testing.assert_array_equal(_dense(turned).numpy(), expected)
            tok = np.rot90(bag.tokens.numpy(), k, axes=(-2, -1))
            tok = tok[..., ::-1] if flip else tok
            np.testing.assert_allclose(turned.tokens.numpy(), tok)
    assert turn_grid(bag, 0, False) is bag


def test_augment_bag_is_a_function_of_the_rng() -> None:
    bag = _bag(n=40, shape=(8, 8))
    cfg = MILTrainConfig(grid_flips=True, tile_dropout=0.5, feature_noise=0.1)
    a = augment_bag(bag, cfg, np.random.default_rng(3))
    b = augment_bag(bag, cfg, np.random.default_rng(3))
    assert torch.equal(a.features, b.features) and torch.equal(a.grid_index, b.grid_index)
    assert 5 < len(a) < 35  # about half the tiles dropped
    assert not torch.equal(a.features, bag.features[: len(a)])


def test_input_norm_standardises_and_keeps_constant_channels_finite() -> None:
    feats = torch.cat([torch.randn(50, 3) * 1e-3 + 5, torch.full((50, 1), 2.0)], 1)
    lb = LabelledBag(None, Bag(feats), torch.ones(1))  # type: ignore[arg-type]
    mean, scale = input_norm([lb])
    assert torch.allclose(mean, feats.mean(0), atol=1e-5)
    assert scale[3] == 1.0 and torch.allclose(scale[:3], feats[:, :3].std(0, unbiased=False), rtol=1e-3)


def test_standardised_model_equals_identity_model_on_standardised_input() -> None:
    bag = _bag()
    scaled = Bag(bag.features * 1e-3 + 7, bag.grid_index, bag.grid_shape)
    torch.manual_seed(0)
    a = create_aggregator("insight", 6, 1, hidden=8).eval()
    a.set_input_norm(torch.full((6,), 7.0), torch.full((6,), 1e-3))
    torch.manual_seed(0)
    b = create_aggregator("insight", 6, 1, hidden=8).eval()
    assert torch.allclose(a(scaled).scores, b(bag).scores, atol=1e-4)


def test_model_files_without_input_norm_load_as_identity() -> None:
    m = create_aggregator("abmil", 6, 1)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("input_")}
    fresh = create_aggregator("abmil", 6, 1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.input_scale, torch.ones(6))


def test_paper_block_runs_and_bad_block_is_refused() -> None:
    m = create_aggregator("insight", 6, 1, hidden=8, block="paper", detection_depth=4, context_depth=4)
    out = m.eval()(_bag())
    assert out.scores.shape == (12, 1) and torch.isfinite(out.scores).all() and 0 <= float(out.probs) <= 1
    assert any(getattr(c, "padding_mode", "") == "replicate" for c in m.modules())
    with pytest.raises(ConfigError, match="block"):
        create_aggregator("insight", 6, 1, block="fancy")


@pytest.mark.slow
def test_insight_learns_context_that_max_pooling_cannot(tmp_path) -> None:  # noqa: ANN001
    """On context phantom bags a small INSIGHT separates the classes; max pooling does not."""
    from sklearn.metrics import roc_auc_score

    from medwss.data.phantoms.bags import BagPhantomConfig, generate_bags
    from medwss.mil.train import predict, train
    from medwss.train.device import seed_everything

    torch.set_num_threads(1)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from mil_context import load_set

    generate_bags(tmp_path, BagPhantomConfig(n=80, grid=12, cluster=(5, 10), lookalikes=(6, 14)), progress=False)
    data = load_set(tmp_path)
    aucs = {}
    for name in ("insight", "max"):
        seed_everything(0)
        kwargs = {"hidden": 32, "detection_depth": 1, "context_depth": 2, "dropout": 0.0} if name == "insight" else {}
        model = create_aggregator(name, 32, 1, **kwargs)
        cfg = MILTrainConfig(aggregator=name, epochs=20, min_epochs=20, patience=20)
        train(model, data["train"] + data["val"], [], cfg, tmp_path / name, torch.device("cpu"), progress=False)
        outs = predict(model, data["test"], torch.device("cpu"))
        aucs[name] = roc_auc_score([int(b.target[0]) for b in data["test"]], [float(o.probs[0]) for o in outs])
    assert aucs["insight"] >= 0.9, aucs
    assert aucs["max"] <= 0.75, aucs


def test_warmup_schedule_ramps_then_decays_per_step() -> None:
    from medwss.mil.train import _scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = _scheduler(opt, MILTrainConfig(epochs=2, warmup_steps=4), n_train=10, world_size=1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False)) and lrs[-1] < 0.05
    plain = _scheduler(opt, MILTrainConfig(epochs=3), n_train=10, world_size=1)
    assert isinstance(plain, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_context_norm_and_head_biases() -> None:
    m = create_aggregator("insight", 6, 1, hidden=8, context_norm=True, context_bias=-2.0, detection_bias=-1.0)
    assert sum(isinstance(n, torch.nn.Module) and n.__class__.__name__ == "ChannelNorm" for n in m.context.norms) == 3
    assert float(m.context.head.bias) == -2.0 and float(m.detection[-1].bias) == -1.0
    out = m.eval()(_bag())
    assert torch.isfinite(out.scores).all()


@pytest.mark.slow
def test_shipped_insight_does_not_collapse_on_the_seed_that_did(tmp_path) -> None:  # noqa: ANN001
    """Seed 0 on the context benchmark's default set drove every heatmap value to 0 within the first
    epoch (context logits ran off to +150; train loss 6.908); the shipped config keeps it trainable."""
    import sys
    from pathlib import Path

    import yaml

    from medwss.data.phantoms.bags import BagPhantomConfig, generate_bags
    from medwss.mil.train import predict, train
    from medwss.train.device import seed_everything

    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "benchmarks"))
    from mil_context import load_set

    generate_bags(tmp_path / "bags", BagPhantomConfig(n=160, grid=16), progress=False)
    data = load_set(tmp_path / "bags")
    cfg = yaml.safe_load((root / "configs" / "mil_insight.yaml").read_text())
    kwargs = cfg.pop("aggregator_kwargs")
    cfg.update(epochs=1, min_epochs=1, device="cpu", seed=0)
    seed_everything(0)
    model = create_aggregator("insight", 32, 1, **kwargs)
    result = train(
        model, data["train"], [], MILTrainConfig(**cfg), tmp_path / "run", torch.device("cpu"), progress=False
    )
    assert result["history"][0]["train_loss"] < 1.0, result["history"]
    heat = torch.cat([o.scores for o in predict(model, data["train"][:16], torch.device("cpu"))])
    assert float(heat.max()) > 0.05 and float(heat.std()) > 1e-3


@pytest.mark.slow
def test_restarts_pick_by_val_loss_and_resume_without_retraining(tmp_path) -> None:  # noqa: ANN001
    """restarts=2: both initialisations train `restart_epochs`, the better one continues; a run cut
    after the restarts (no continuation checkpoint yet) resumes to the same weights."""
    from medwss.mil.train import reinitialize, train

    def bags(n: int, seed: int) -> list[LabelledBag]:
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(n):
            f = torch.randn(12, 6, generator=g) + (1.5 if i % 2 else 0.0)
            out.append(LabelledBag(None, Bag(f, _bag().grid_index, (3, 5)), torch.tensor([float(i % 2)])))  # type: ignore[arg-type]
        return out

    tr, va = bags(8, 0), bags(4, 1)
    cfg = MILTrainConfig(aggregator="insight", epochs=3, restarts=2, restart_epochs=1, min_epochs=3, device="cpu")

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return create_aggregator("insight", 6, 1, hidden=4, detection_depth=1, context_depth=1, detection_bias=-1.0)

    m = fresh()
    w0 = [p.detach().clone() for p in m.parameters()]
    reinitialize(m, 5)
    assert float(m.detection[-1].bias.detach()) == -1.0  # a constant init is kept
    assert any(not torch.equal(a, b) for a, b in zip(w0, m.parameters(), strict=True))
    first = train(fresh(), tr, va, cfg, tmp_path, torch.device("cpu"), progress=False)
    losses = [r["val_loss"] for r in first["restarts"]]
    assert first["restart_chosen"] == int(np.argmin(losses)) and len(first["history"]) == 3
    assert first["history"][0]["val_loss"] == pytest.approx(losses[first["restart_chosen"]])
    stamps = [(tmp_path / f"restart_{r}" / "checkpoint.pt").stat().st_mtime_ns for r in range(2)]
    (tmp_path / "checkpoint.pt").unlink()  # cut after the restarts: they are read back, not retrained
    (tmp_path / "restarts.json").unlink()
    again = train(fresh(), tr, va, cfg, tmp_path, torch.device("cpu"), progress=False)
    assert again["restart_chosen"] == first["restart_chosen"]
    assert [(tmp_path / f"restart_{r}" / "checkpoint.pt").stat().st_mtime_ns for r in range(2)] == stamps
    assert [r["val_loss"] for r in again["history"]] == pytest.approx([r["val_loss"] for r in first["history"]])


def test_library_defaults_are_the_shipped_insight():
    """`medwss mil train` without --config trains the benchmarked INSIGHT (configs/mil_insight.yaml)."""
    import inspect
    from pathlib import Path

    from medwss.config import load_config
    from medwss.mil.insight import Insight

    shipped = load_config(Path(__file__).resolve().parents[2] / "configs" / "mil_insight.yaml", MILTrainConfig)
    assert shipped.model_dump(exclude={"aggregator_kwargs"}) == MILTrainConfig().model_dump(
        exclude={"aggregator_kwargs"}
    )
    params = inspect.signature(Insight.__init__).parameters
    assert shipped.aggregator_kwargs and all(params[k].default == v for k, v in shipped.aggregator_kwargs.items())
