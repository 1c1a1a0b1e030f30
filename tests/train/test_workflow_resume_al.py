"""The active-learning slice metric resumes after an interruption with the same final weights."""

from __future__ import annotations

import pytest
import torch

from medwss.active.metric import MetricConfig, make_encoder, train_metric
from medwss.errors import ConfigError
from tests.active.test_metric_config import _pool

TINY = {"widen_factor": 0.0625}


def run(pool, cfg, out):  # noqa: ANN001, ANN201
    v, p, i = pool.groups("volume"), pool.groups("patient"), pool.slice_index()
    return train_metric(pool.thumbs, v, p, i, cfg, out, progress=False)


def test_metric_resume_gives_the_same_final_weights(tmp_path, monkeypatch):
    import medwss.active.metric as metric

    pool = _pool()
    cfg = MetricConfig(encoder_kwargs=TINY, epochs=3, batch_size=8, adjacent_weight=0.05, device="cpu", seed=1)
    straight, ref = run(pool, cfg, tmp_path / "a" / "m.pt")
    real, calls = metric.weighted_group_nt_xent, {"n": 0}

    def dying(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 3 + 3 + 1:  # 3 batches an epoch: killed one batch into the third epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(metric, "weighted_group_nt_xent", dying)
    out = tmp_path / "b" / "m.pt"
    with pytest.raises(KeyboardInterrupt):
        run(pool, cfg, out)
    monkeypatch.setattr(metric, "weighted_group_nt_xent", real)
    assert not out.exists()
    assert torch.load(str(out) + ".ckpt", weights_only=True)["engine"]["epoch"] == 2
    with pytest.raises(ConfigError, match=r"\(temperature\)"):
        run(pool, cfg.model_copy(update={"temperature": 0.1}), out)
    torch.manual_seed(5)  # the fresh encoder's initialisation does not matter when resuming
    resumed, hist = run(pool, cfg, out)
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["loss"] for r in hist] == [r["loss"] for r in ref]
    assert not (tmp_path / "b" / "m.pt.ckpt").exists()  # removed once the model file is written
    from medwss.train import load_model

    loaded, record = load_model(out)
    assert record.kind == "encoder" and record.meta["metric"]["temperature"] == cfg.temperature
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in sa.items())
    again = make_encoder(cfg, out)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in sa.items())
