"""The shared segmenter trainer: weak labels learn, checkpoints resume, files round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.data.labels import IGNORE
from medwss.errors import CorruptFileError, InvalidDataError
from medwss.seg.bounds import bounds_from_mask
from medwss.seg.networks import SEGMENTERS, create_segmenter
from medwss.seg.train import (
    SegSample,
    SegTrainConfig,
    collate,
    load_segmenter,
    mean_dice,
    predict_probs,
    save_segmenter,
    train_segmenter,
)


def disc_images(n: int, seed: int, size: int = 24, weak: bool = False) -> list[SegSample]:
    """Bright discs on noise; weak targets: a small disc at the centre (fg) and the border (bg)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 6)
        d = np.hypot(yy - cy, xx - cx)
        mask = (d < r).astype(np.int64)
        image = (mask + 0.3 * rng.standard_normal((size, size))).astype(np.float32)[None]
        target = mask
        if weak:
            target = np.full_like(mask, IGNORE)
            target[d < 1.5] = 1
            target[d > r + 4] = 0
        out.append(SegSample(image, target, bounds_from_mask(mask, 2, 0.1)))
    return out


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@pytest.mark.parametrize("dims", [2, 3])
def test_segmenters_forward_backward(name, dims):
    net = create_segmenter(name, dims, in_channels=2, out_channels=3, channels=(4, 8, 16))
    x = torch.randn(1, 2, *([8] * dims))
    y = net(x)
    assert y.shape == (1, 3, *([8] * dims)) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_collate_pads_to_network_multiple():
    cfg = SegTrainConfig(channels=(4, 8, 16), num_classes=2)
    a = SegSample(np.zeros((1, 5, 7), np.float32), np.zeros((5, 7), np.int64))
    b = SegSample(np.ones((1, 9, 4), np.float32), np.ones((9, 4), np.int64))
    batch = collate([a, b], cfg)
    assert batch["image"].shape == (2, 1, 12, 8)
    assert batch["target"][0, 5:].eq(IGNORE).all() and batch["valid"][1, 0, :9, :4].eq(1).all()
    assert batch["valid"].sum().item() == 5 * 7 + 9 * 4
    with pytest.raises(InvalidDataError):
        collate([SegSample(np.zeros((5, 7), np.float32), np.zeros((5, 7), np.int64))], cfg)


def test_full_supervision_learns_discs():
    cfg = SegTrainConfig(channels=(8, 16), epochs=15, batch_size=4, loss="ce_dice", lr=3e-3, device="cpu")
    model, hist = train_segmenter(disc_images(16, 0), cfg, val=disc_images(4, 1), progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert mean_dice(model, disc_images(6, 2), cfg, torch.device("cpu")) > 0.8


def test_size_loss_beats_partial_ce_alone_on_centre_scribbles():
    train, test = disc_images(16, 0, weak=True), disc_images(8, 3)
    base = dict(channels=(8, 16), epochs=15, batch_size=4, lr=3e-3, device="cpu")
    plain, _ = train_segmenter(train, SegTrainConfig(**base), progress=False)
    sized, _ = train_segmenter(train, SegTrainConfig(**base, size_weight=0.005), progress=False)
    cfg = SegTrainConfig(**base)
    assert mean_dice(sized, test, cfg, torch.device("cpu")) > mean_dice(plain, test, cfg, torch.device("cpu"))


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    data = disc_images(6, 0)
    cfg = SegTrainConfig(channels=(4, 8), epochs=3, batch_size=3, device="cpu")
    full, hist_full = train_segmenter(data, cfg, checkpoint=tmp_path / "a.pt", progress=False)
    first, _ = train_segmenter(data, cfg.model_copy(update={"epochs": 1}), checkpoint=tmp_path / "b.pt", progress=False)
    resumed, hist = train_segmenter(data, cfg, checkpoint=tmp_path / "b.pt", progress=False)
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in hist_full])
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float())


def test_save_load_and_predict_crops_back(tmp_path):
    cfg = SegTrainConfig(channels=(4, 8), num_classes=3, dropout=0.2)
    model = create_segmenter("unet", 2, 1, 3, (4, 8), 0.2)
    path = save_segmenter(model, cfg, tmp_path / "m.pt", meta={"classes": ["bg", "a", "b"]})
    loaded, cfg2, meta = load_segmenter(path)
    assert cfg2 == cfg and meta["classes"] == ["bg", "a", "b"]
    probs = predict_probs(loaded, [np.zeros((1, 7, 5), np.float32)], cfg2)
    assert probs[0].shape == (3, 7, 5) and np.allclose(probs[0].sum(0), 1, atol=1e-5)
    a = predict_probs(loaded, [np.ones((1, 8, 8), np.float32)], cfg2, mc_dropout=True)[0]
    b = predict_probs(loaded, [np.ones((1, 8, 8), np.float32)], cfg2, mc_dropout=True)[0]
    assert not np.allclose(a, b)
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(CorruptFileError, match="bad.pt"):
        load_segmenter(tmp_path / "bad.pt")


def test_size_weight_ramps_over_warmup():
    from medwss.seg.train import size_weight_at

    cfg = SegTrainConfig(size_weight=0.01, size_warmup=4)
    assert [size_weight_at(cfg, e) for e in range(5)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])
    assert size_weight_at(SegTrainConfig(size_weight=0.01), 0) == 0.01
