"""Augmentation pipelines: shapes and dtypes kept, labels move with images, IGNORE padding, seeded draws."""

from __future__ import annotations

import pytest
import torch

from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError
from medwss.transforms import PRESETS, AugmentConfig, augment_batch, augment_pipeline, hed_jitter
from medwss.transforms.stain import RandHEStaind


def _batch(b: int = 3, c: int = 1, shape: tuple[int, ...] = (12, 10)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(IGNORE, 3, (b, *shape), generator=g)
    return {
        "image": torch.rand(b, c, *shape, generator=g),
        "target": target,
        "valid": torch.ones(b, 1, *shape),
        "empty": torch.zeros(b, dtype=torch.bool),
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_shapes_dtypes_and_label_values(name):
    batch = _batch(c=3 if name == "pretrain" else 1, shape=(16, 16))
    pipe = augment_pipeline(PRESETS[name], label_keys=("target",), mask_keys=("valid",), device="cpu")
    out = augment_batch(pipe, batch, seed=0)
    assert out.keys() == batch.keys()
    for k, v in batch.items():
        assert out[k].shape == v.shape and out[k].dtype == v.dtype and out[k].device == v.device
    assert set(out["target"].unique().tolist()) <= {IGNORE, 0, 1, 2}
    assert torch.equal(out["empty"], batch["empty"]) and torch.isfinite(out["image"]).all()


def test_flip_moves_image_label_and_mask_together():
    batch = _batch(b=4)
    batch["target"] = (batch["image"][:, 0] * 3).long()  # the label is a function of the image
    batch["valid"] = (batch["image"] > 0.5).float()
    pipe = augment_pipeline(AugmentConfig(flip_prob=1.0), label_keys=("target",))
    out = augment_batch(pipe, batch, seed=1)
    assert torch.equal(out["image"], batch["image"].flip(-1).flip(-2))  # both axes, always
    assert torch.equal(out["target"], (out["image"][:, 0] * 3).long())
    assert torch.equal(out["valid"], (out["image"] > 0.5).float())


def test_left_right_flip_only_touches_columns():
    batch = _batch(b=8)
    out = augment_batch(augment_pipeline(PRESETS["lr_flip"]), {"image": batch["image"]}, seed=0)["image"]
    flipped = [torch.equal(o, x.flip(-1)) for o, x in zip(out, batch["image"], strict=True)]
    same = [torch.equal(o, x) for o, x in zip(out, batch["image"], strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True)) and any(flipped) and any(same)


def test_affine_pads_labels_with_ignore_and_masks_with_zero():
    batch = _batch(b=2, shape=(16, 16))
    batch["target"] = torch.randint(0, 3, (2, 16, 16))  # fully labelled: any IGNORE comes from padding
    cfg = AugmentConfig(affine_prob=1.0, rotate=0.5, scale=(1.4, 1.4), translate=3.0)  # zoomed out: borders padded
    out = augment_batch(augment_pipeline(cfg, label_keys=("target",)), batch, seed=0)
    padded = out["target"] == IGNORE
    assert padded.any() and out["target"].dtype == torch.int64
    assert torch.equal(padded, out["valid"][:, 0] == 0)  # nearest for both: the same pixels are padding
    assert set(out["target"][~padded].unique().tolist()) <= {0, 1, 2}  # nearest: no blended classes


def test_seeded_runs_repeat_and_seeds_differ():
    batch = _batch(b=4)
    cfg = AugmentConfig(flip_prob=0.5, noise_prob=1.0, gamma_prob=1.0, affine_prob=0.5, blur_prob=0.5)
    a = augment_batch(augment_pipeline(cfg, label_keys=("target",)), batch, seed=7)
    b = augment_batch(augment_pipeline(cfg, label_keys=("target",)), batch, seed=7)
    c = augment_batch(augment_pipeline(cfg, label_keys=("target",)), batch, seed=8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image"], c["image"])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    pipe = augment_pipeline(cfg, label_keys=("target",))
    assert torch.equal(augment_batch(pipe, batch, seed=g1)["image"], augment_batch(pipe, batch, seed=g2)["image"])


def test_intensity_transforms_leave_labels_and_3d_works():
    batch = _batch(b=2, c=2, shape=(8, 8, 4))
    cfg = AugmentConfig(
        scale_intensity_prob=1.0, shift_intensity_prob=1.0, channel_wise=True, bias_prob=1.0, lowres_prob=1.0,
        noise_prob=1.0, blur_prob=1.0, contrast_prob=1.0, clip=(0.0, 1.0),
    )  # fmt: skip
    out = augment_batch(augment_pipeline(cfg, label_keys=("target",), spatial_dims=3), batch, seed=0)
    assert torch.equal(out["target"], batch["target"]) and out["image"].shape == (2, 2, 8, 8, 4)
    assert not torch.equal(out["image"], batch["image"]) and 0.0 <= out["image"].min() <= out["image"].max() <= 1.0


def test_stain_jitter_identity_and_batched_equals_per_tile():
    x = torch.rand(2, 3, 6, 6) * 0.8 + 0.1
    assert torch.allclose(hed_jitter(x[0], torch.ones(3), torch.zeros(3)), x[0], atol=1e-5)
    alpha, beta = (
        torch.tensor([[1.05, 0.95, 1.0], [0.9, 1.1, 1.0]]),
        torch.tensor([[0.02, 0.0, 0.0], [0.0, -0.02, 0.0]]),
    )
    batched = hed_jitter(x, alpha, beta, channel_dim=1)
    assert torch.allclose(batched[1], hed_jitter(x[1], alpha[1], beta[1]), atol=1e-6)
    assert not torch.allclose(batched, x, atol=1e-3)
    out = RandHEStaind("image", prob=1.0)({"image": x[0]})["image"]
    assert out.shape == (3, 6, 6) and not torch.allclose(out, x[0])
    with pytest.raises(InvalidDataError):
        hed_jitter(torch.rand(1, 4, 4), torch.ones(3), torch.zeros(3))


def test_misuse_is_reported():
    with pytest.raises(InvalidDataError):
        augment_pipeline(AugmentConfig(flip_prob=0.5, flip_axes=(2,)), spatial_dims=2)
    pipe = augment_pipeline(AugmentConfig(rot90_prob=1.0))
    with pytest.raises(InvalidDataError, match="shape"):
        augment_batch(pipe, {"image": torch.rand(8, 1, 8, 6)}, seed=0)  # 90° turns of a non-square image
    with pytest.raises(ValueError):
        AugmentConfig(noise_prob=1.5)
