"""COIN's classifier and GAN resume after an interruption with the same final weights as an uninterrupted run."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import medwss.counterfactual.classifier as clf_mod
import medwss.counterfactual.train as coin_mod
from medwss.counterfactual.classifier import ClassifierConfig, create_classifier, load_classifier, train_classifier
from medwss.counterfactual.slices import SliceSpec
from medwss.counterfactual.train import CoinConfig, load_generator, save_generator, train_coin
from medwss.errors import ConfigError
from medwss.train import fit, load_model

CLF = ClassifierConfig(channels=(4, 4, 8, 8), epochs=3, batch_size=8, lr=0.01, device="cpu")
GAN = CoinConfig(iterations=6, eval_every=2, batch_size=4, gen_channels=(4, 8), disc_channels=(4, 8), device="cpu")


def toy(n: int = 24, s: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.6, -0.4, (n, 1, s, s)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, 0, 4:8, 4:8] = 0.8
    return x, y


def frozen_classifier() -> torch.nn.Module:
    """A fixed random classifier that calls about half the toy slices abnormal."""
    x, _ = toy()
    torch.manual_seed(0)
    clf = create_classifier((4, 4, 8, 8)).eval()
    with torch.no_grad():
        logits = clf(torch.from_numpy(x))  # (N, 2)
        clf.fc.bias[1] -= float(torch.median(logits[:, 1] - logits[:, 0]))
    return clf


def interrupting(monkeypatch, module, after: int) -> None:  # noqa: ANN001
    """Make `module`'s `fit` raise (like a killed job) once `after` rounds are checkpointed."""
    rounds = []

    def hook(row):  # noqa: ANN001, ANN202
        rounds.append(row)
        if len(rounds) >= after:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "fit", functools.partial(fit, on_round_end=hook))


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classifier_resume_gives_the_same_final_weights(tmp_path, monkeypatch):
    x, y = toy()
    straight, hist = train_classifier(x, y, CLF, progress=False, checkpoint=tmp_path / "a.ckpt")
    with monkeypatch.context() as m:
        interrupting(m, clf_mod, 1)
        with pytest.raises(KeyboardInterrupt):
            train_classifier(x, y, CLF, progress=False, checkpoint=tmp_path / "b.ckpt")
    torch.manual_seed(7)  # the fresh model's initialisation does not matter when resuming
    resumed, hist_b = train_classifier(x, y, CLF, progress=False, checkpoint=tmp_path / "b.ckpt")
    assert same(straight, resumed) and hist_b == hist and len(hist) == 3
    no_ckpt, _ = train_classifier(x, y, CLF, progress=False)
    assert same(straight, no_ckpt)  # seeded: the checkpoint changes nothing
    with pytest.raises(ConfigError, match=r"\(lr\)"):
        train_classifier(x, y, CLF.model_copy(update={"lr": 0.1}), progress=False, checkpoint=tmp_path / "b.ckpt")


def test_gan_resume_mid_run_gives_the_same_final_weights(tmp_path, monkeypatch):
    x, y = toy()
    clf = frozen_classifier()
    straight, hist = train_coin(clf, x, GAN, progress=False, labels=y, checkpoint=tmp_path / "a.ckpt")
    assert [r["iteration"] for r in hist] == [1, 3, 5]
    assert {"d", "adv", "kl", "rec", "cyc", "tv", "loss_generator", "loss_discriminator"} <= set(hist[-1])
    with monkeypatch.context() as m:
        interrupting(m, coin_mod, 2)  # killed after iteration 4 of 6, inside the engine's (only) epoch
        with pytest.raises(KeyboardInterrupt):
            train_coin(clf, x, GAN, progress=False, labels=y, checkpoint=tmp_path / "b.ckpt")
    torch.manual_seed(3)
    resumed, hist_b = train_coin(clf, x, GAN, progress=False, labels=y, checkpoint=tmp_path / "b.ckpt")
    assert same(straight, resumed)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(hist_b) == strip(hist)
    # more iterations continue a finished run: the same as running them all at once
    more = GAN.model_copy(update={"iterations": 8})
    longer, _ = train_coin(clf, x, more, progress=False, labels=y, checkpoint=tmp_path / "b.ckpt")
    at_once, _ = train_coin(clf, x, more, progress=False, labels=y)
    assert same(longer, at_once) and not same(longer, straight)
    with pytest.raises(ConfigError, match=r"\(lambda_kl\)"):
        train_coin(clf, x, GAN.model_copy(update={"lambda_kl": 1.0}), False, y, tmp_path / "b.ckpt")


def test_gan_with_several_updates_per_iteration_resumes(tmp_path, monkeypatch):
    x, y = toy()
    clf = frozen_classifier()
    cfg = GAN.model_copy(update={"iterations": 4, "d_steps": 2, "g_steps": 2})
    straight, _ = train_coin(clf, x, cfg, progress=False, labels=y)
    with monkeypatch.context() as m:
        interrupting(m, coin_mod, 1)
        with pytest.raises(KeyboardInterrupt):
            train_coin(clf, x, cfg, progress=False, labels=y, checkpoint=tmp_path / "c.ckpt")
    resumed, _ = train_coin(clf, x, cfg, progress=False, labels=y, checkpoint=tmp_path / "c.ckpt")
    assert same(straight, resumed)


def test_model_files_and_their_older_formats_load(tmp_path):
    clf = frozen_classifier()
    cfg = ClassifierConfig(channels=(4, 4, 8, 8))
    spec = SliceSpec(size=16)
    clf_mod.save_classifier(clf, cfg, spec, tmp_path / "c.pt")
    model, record = load_model(tmp_path / "c.pt")
    assert record.kind == "coin_classifier" and record.legacy is None and same(model, clf)
    torch.save({"state_dict": clf.state_dict(), "config": cfg.model_dump(mode="json"), "spec": spec.as_dict()},
               tmp_path / "c_old.pt")  # fmt: skip
    old, cfg_old, spec_old = load_classifier(tmp_path / "c_old.pt")
    assert same(old, clf) and cfg_old.channels == (4, 4, 8, 8) and spec_old.size == 16
    assert not any(p.requires_grad for p in old.parameters())
    assert load_model(tmp_path / "c_old.pt")[1].legacy == "COIN classifier (older format)"

    from medwss.counterfactual.generator import CounterfactualGenerator

    torch.manual_seed(1)
    G = CounterfactualGenerator((4, 8), (2,), 1, 1.0)
    save_generator(G, GAN, tmp_path / "g.pt")
    assert same(load_generator(tmp_path / "g.pt"), G) and load_model(tmp_path / "g.pt")[1].kind == "coin_generator"
    torch.save({"state_dict": G.state_dict(), "settings": G.settings(), "config": GAN.model_dump(mode="json")},
               tmp_path / "g_old.pt")  # fmt: skip
    assert same(load_generator(tmp_path / "g_old.pt"), G)
    from medwss.errors import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError, match="not a 'coin_generator' one"):
        load_generator(tmp_path / "c.pt")
    with pytest.raises(UnsupportedFormatError, match="not a 'coin_classifier' one"):
        load_classifier(tmp_path / "g.pt")
