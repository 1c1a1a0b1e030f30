"""Each ported workflow resumes after an interruption with the same final weights as an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medwss.mil.base import Bag
from medwss.mil.data import LabelledBag
from medwss.mil.registry import create_aggregator
from medwss.mil.train import MILTrainConfig, train


def tiny_bags(n: int = 8, dim: int = 6, seed: int = 0) -> list[LabelledBag]:
    rng = np.random.default_rng(seed)
    bags = []
    for i in range(n):
        label = i % 2
        x = rng.normal(size=(int(rng.integers(5, 12)), dim)).astype(np.float32) + label * 0.8
        bags.append(LabelledBag(None, Bag(torch.from_numpy(x)), torch.tensor([float(label)])))
    return bags


class Interrupted(list):
    """The training bags, raising (like a killed job) after `limit` reads."""

    def __init__(self, items, limit):  # noqa: ANN001
        super().__init__(items)
        self.limit, self.reads = limit, 0

    def __getitem__(self, i):  # noqa: ANN001, ANN204
        if isinstance(i, int):
            self.reads += 1
            if self.reads > self.limit:
                raise KeyboardInterrupt
        return super().__getitem__(i)


def mil_run(out, bags, cfg):  # noqa: ANN001, ANN201
    torch.manual_seed(cfg.seed)
    model = create_aggregator(cfg.aggregator, 6, 1)
    res = train(model, bags, tiny_bags(4, seed=1), cfg, out, torch.device("cpu"), progress=False)
    return model, res


@pytest.mark.parametrize("aggregator", ["abmil", "insight"])
def test_mil_resume_gives_the_same_final_weights(tmp_path, aggregator):
    cfg = MILTrainConfig(aggregator=aggregator, epochs=4, max_instances=6, device="cpu", seed=2)
    bags = tiny_bags()
    straight, ref = mil_run(tmp_path / "a", bags, cfg)
    with pytest.raises(KeyboardInterrupt):
        mil_run(tmp_path / "b", Interrupted(bags, 2 * len(bags) + 3), cfg)  # killed in the third epoch
    assert len(json.loads((tmp_path / "b" / "history.json").read_text())) == 2
    torch.manual_seed(99)  # the fresh model's initialisation does not matter when resuming
    model = create_aggregator(aggregator, 6, 1)
    res = train(model, bags, tiny_bags(4, seed=1), cfg, tmp_path / "b", torch.device("cpu"), progress=False)
    sa, sb = straight.state_dict(), model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert json.dumps(strip(res["history"])) == json.dumps(strip(ref["history"]))
    assert res["best_epoch"] == ref["best_epoch"]


def test_mil_selects_on_auc_when_asked(tmp_path):
    cfg = MILTrainConfig(aggregator="abmil", epochs=3, monitor="val_auc", device="cpu")
    _, res = mil_run(tmp_path, tiny_bags(), cfg)
    aucs = [r["val_auc"] for r in res["history"]]
    assert res["history"][res["best_epoch"]]["val_auc"] == max(aucs)


def test_mil_incompatible_resume_names_the_keys(tmp_path):
    from medwss.errors import ConfigError

    mil_run(tmp_path, tiny_bags(), MILTrainConfig(aggregator="abmil", epochs=1, device="cpu"))
    with pytest.raises(ConfigError, match=r"\(lr\)"):
        mil_run(tmp_path, tiny_bags(), MILTrainConfig(aggregator="abmil", epochs=1, lr=0.1, device="cpu"))


def test_ssl_resume_gives_the_same_final_weights(tmp_path):
    from medwss.embed.encoders import create_encoder
    from medwss.embed.pretrain import PretrainConfig, pretrain
    from tests.embed.test_pretrain import TINY, Interrupting, tiny_tiles

    data = tiny_tiles(16)
    cfg = PretrainConfig(encoder_kwargs=TINY, epochs=2, batch_size=8, device="cpu", out=str(tmp_path / "w.pt"))
    torch.manual_seed(0)
    straight = create_encoder("resnet18", **TINY)
    pretrain(straight, data, cfg.model_copy(update={"out": str(tmp_path / "ref" / "w.pt")}), progress=False)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        pretrain(create_encoder("resnet18", **TINY), Interrupting(data, len(data) + 4), cfg, progress=False)
    torch.manual_seed(5)
    resumed = create_encoder("resnet18", **TINY)
    pretrain(resumed, data, cfg, progress=False)
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    from medwss.train import load_model

    loaded, record = load_model(tmp_path / "w.pt")
    assert record.kind == "encoder" and record.config["kwargs"] == TINY
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in sa.items())
