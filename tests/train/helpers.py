"""A tiny seeded regression problem for the engine's tests (also run as a script by the kill -9 test)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medwss.train import EngineConfig, fit

N, D = 32, 4


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    y = x @ torch.arange(1.0, D + 1) + 0.1 * torch.randn(N, generator=g)
    return x, y


class Net(nn.Module):
    """Linear → dropout → linear: dropout draws from torch's RNG, so resume must restore it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(D, 8)
        self.drop = nn.Dropout(0.2)
        self.b = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.drop(torch.relu(self.a(x)))).squeeze(-1)  # (B, D) -> (B,)


def run(out: Path, cfg: EngineConfig, on_round_end=None, sleep: float = 0.0, validate=None, run_config=None):  # noqa: ANN001, ANN201
    """Train `Net` on the problem with a checkpoint in `out`; returns the model and the result."""
    x, y = make_data()
    torch.manual_seed(123)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)

    def data(epoch: int):  # noqa: ANN202
        order = np.random.default_rng(cfg.seed * 1000 + epoch).permutation(N)
        for i in range(0, N, 8):
            yield x[order[i : i + 8]], y[order[i : i + 8]]

    def step(batch, ctx):  # noqa: ANN001, ANN202
        xb, yb = batch
        noise = float(np.random.rand()) * 1e-3  # NumPy's global RNG, restored on resume too
        if sleep:
            time.sleep(sleep)
        return ((ctx.model(xb) - yb) ** 2).mean() + noise

    res = fit(model, opt, step, data, cfg, schedulers=sched, out_dir=out, checkpoint=out / "checkpoint.pt",
              on_round_end=on_round_end, validate=validate, run_config=run_config)  # fmt: skip
    return model, res


if __name__ == "__main__":  # python helpers.py OUT CONFIG_JSON SLEEP: the run the kill -9 test kills
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    model, _ = run(out, EngineConfig.model_validate(json.loads(sys.argv[2])), sleep=float(sys.argv[3]))
    torch.save(model.state_dict(), out / "final.pt")
