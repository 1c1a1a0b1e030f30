"""The general workflow: K classes, per-class bounds, slices through the slicer, DMPLS, channels from the manifest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.data.labels import IGNORE
from medwss.errors import ConfigError
from medwss.io import load_volume
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.dataset import box_bounds, build_samples, case_samples, image_bounds, prepare_case, val_samples
from tests.scribble.conftest import INPUT, SHAPE, TINY


def test_tag_bounds_per_class():
    cfg = ScribbleConfig(num_classes=4, bounds="tag")
    weak = np.full((8, 8), IGNORE)
    weak[1, 1], weak[2, 2] = 1, 3  # RV and LV marked, myocardium not
    prior = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]
    b = image_bounds(cfg, weak, None, False, prior)
    np.testing.assert_allclose(b[1], [1.0, 10.0])
    assert np.isnan(b[2]).all()  # unmarked: unknown
    np.testing.assert_allclose(b[3], [3.0, 30.0])
    assert np.isnan(b[0]).all()
    absent = image_bounds(cfg.model_copy(update={"negative_slices": "unmarked"}), weak, None, False, prior)
    np.testing.assert_allclose(absent[2], [0.0, 0.0])  # unmarked taken as absent
    np.testing.assert_allclose(image_bounds(cfg, weak, None, True, prior)[1:], 0.0)  # known empty
    up = image_bounds(cfg.model_copy(update={"bounds": "upper"}), weak, None, False, prior)
    np.testing.assert_allclose(up[3], [0.0, 30.0])


def test_true_and_box_bounds_per_class():
    mask = np.zeros((12, 12), np.int64)
    mask[2:10, 2:10] = 2  # a ring around the LV: its own box, not overwritten by the LV's
    mask[4:8, 4:8] = 3
    b = image_bounds(ScribbleConfig(num_classes=4, bounds="true", margin=0.5), mask, mask, False, (0.0, 1.0))
    np.testing.assert_allclose(b[2], [24.0, 72.0])
    np.testing.assert_allclose(b[3], [8.0, 24.0])
    np.testing.assert_allclose(b[1], [0.0, 0.0])  # absent class: size 0
    boxes = box_bounds(mask, 4, 0.5)
    np.testing.assert_allclose(boxes[2], [32.0, 64.0])
    np.testing.assert_allclose(boxes[3], [8.0, 16.0])


def test_config_checks_and_channels_from_the_manifest(heart):
    with pytest.raises(ValueError, match="size_prior has 1 pairs for 3"):
        ScribbleConfig(num_classes=4, size_prior=((1.0, 2.0),))
    with pytest.raises(ValueError, match="class_names has 2 names"):
        ScribbleConfig(num_classes=4, class_names=("a", "b"))
    with pytest.raises(ConfigError, match="sequences is empty"):
        ScribbleConfig().seg_config()
    cfg = ScribbleConfig(**{**INPUT, "sequences": ()}).with_sequences(list(heart.cases[0].images))
    assert cfg.sequences == ("image",) and cfg.seg_config().in_channels == 1
    assert cfg.seg_config().num_classes == 4


def test_scribble_column_used_as_given_and_slices_resized(heart):
    case = heart.cases[0]
    priors = ((5.0, 80.0), (10.0, 300.0), (5.0, 150.0))
    cfg = ScribbleConfig(**INPUT, slice_size=32, bounds="tag", size_prior=priors, oversample=1)
    p = prepare_case(case, cfg, heart.path.parent)
    stored = load_volume(case.scribble).array
    assert p.input.image.shape == (1, 48, 48, 4)  # whole field of view, square on the larger side (48)
    # the crop is the square around the field of view: the stored scribble sits inside it, values unchanged
    assert (p.target == IGNORE).sum() == (stored < 0).sum() + (48 - 40) * 48 * 4
    for c in range(4):
        assert (p.target == c).sum() == (stored == c).sum()
    samples = case_samples(p, cfg)
    assert len(samples) == 4 and samples[0].image.shape == (1, 32, 32) and samples[0].target.shape == (32, 32)
    assert set(np.unique(samples[0].target)) <= {IGNORE, 0, 1, 2, 3}
    # the (3D) skeletons mark the middle slice only; 48 -> 32 pixels keeps every class's marks
    for c in range(1, 4):
        assert (samples[1].target == c).any()
    # each pixel is now 1.5 x 1.5 = 2.25 mm², so a 10 mm² prior is 4.44 pixels
    np.testing.assert_allclose(samples[1].bounds[2], [10.0 / 2.25, 300.0 / 2.25], rtol=1e-5)
    assert samples[0].empty is False and np.isnan(samples[0].bounds[1:]).all()  # no mark, not known empty
    val = val_samples(p, cfg)
    assert len(val) == 3 and set(np.unique(val[0].target)) <= {0, 1, 2, 3}


def test_weak_labels_generated_when_no_scribble_and_bad_values_reported(heart, tmp_path):
    case = heart.cases[1]
    cfg = ScribbleConfig(**INPUT, use_scribble_column=False, weak_kind="skeleton")
    p = prepare_case(case, cfg, heart.path.parent)
    lab = p.target >= 0
    assert {1, 2, 3} <= set(np.unique(p.target[lab]))
    np.testing.assert_array_equal(p.target[lab], p.input.mask[lab])
    binary = prepare_case(case, ScribbleConfig(**{**INPUT, "num_classes": 2}, supervision="full"), heart.path.parent)
    assert set(np.unique(binary.target)) == {0, 1}  # a binary config merges the structures
    _, failures = build_samples([case], ScribbleConfig(**{**INPUT, "num_classes": 3}), heart.path.parent)
    assert len(failures) == 1 and "outside 0..2" in failures[0]["error"]


def test_cache_reuses_loaded_cases(heart):
    cfg = ScribbleConfig(**INPUT, slice_size=32)
    cache: dict = {}
    a, _ = build_samples(heart.cases[:2], cfg, heart.path.parent, cache=cache)
    assert len(cache) == 2
    b, _ = build_samples(
        heart.cases[:2], cfg.model_copy(update={"bounds": "none", "seed": 3}), heart.path.parent, cache=cache
    )
    assert len(cache) == 2 and len(a) == len(b)
    build_samples(heart.cases[:2], cfg.model_copy(update={"supervision": "full"}), heart.path.parent, cache=cache)
    assert len(cache) == 4  # another target: loaded again


def test_dual_branch_network_and_loss():
    from medwss.scribble.dmpls import DualBranch, dmpls_loss
    from medwss.seg.train import SegSample, SegTrainConfig, collate

    torch.manual_seed(0)
    seg = SegTrainConfig(in_channels=1, num_classes=4, channels=(4, 8, 16), device="cpu")
    net = DualBranch(seg).eval()
    x = torch.randn(2, 1, 16, 16)
    main, aux = net.both(x)
    assert main.shape == aux.shape == (2, 4, 16, 16)
    torch.testing.assert_close(net(x), net.main(x))
    torch.testing.assert_close(main, net.main(x))  # the main branch is the plain UNet
    assert not torch.allclose(main, aux)  # an independently initialised decoder
    target = np.full((16, 16), IGNORE)
    target[4, 4], target[10, 10] = 1, 0
    batch = collate([SegSample(np.random.default_rng(0).normal(size=(1, 16, 16)).astype(np.float32), target)] * 2, seg)
    net.train()
    loss = dmpls_loss(net, batch, seg, beta=0.3)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.aux_ups.parameters())


@pytest.mark.parametrize("method", ["standard", "dmpls"])
def test_train_and_predict_label_maps(heart, tmp_path, method):
    from medwss.scribble.workflow import predict_cases, train_model

    cfg = ScribbleConfig(**INPUT, **TINY, slice_size=32, method=method, size_prior=(5.0, 300.0))
    summary = train_model(heart, cfg, tmp_path, progress=False)
    assert summary["train_samples"] == 16 and summary["val_samples"] == 3 and summary["failed"] == 0
    test = heart.split("test")
    out = predict_cases(
        heart, test, [tmp_path / "model.pt"], tmp_path / "pred", progress=False, formats=("nifti", "slicer")
    )
    assert out["done"] == 1 and not out["failed"]
    pred = load_volume(tmp_path / "pred" / "predictions" / f"{test[0].case_id}.nii.gz")
    assert pred.shape == SHAPE and np.issubdtype(pred.array.dtype, np.integer)
    assert set(np.unique(pred.array)) <= {0, 1, 2, 3}
    assert (tmp_path / "pred" / "predictions" / f"{test[0].case_id}_labels.ctbl").exists()


def test_predict_cli_keeps_the_largest_component_of_each_structure(heart, tmp_path):
    import json

    from scipy import ndimage

    from medwss.cli.main import main
    from medwss.scribble.workflow import train_model

    cfg = ScribbleConfig(**INPUT, **TINY, slice_size=32, size_prior=(5.0, 300.0))
    train_model(heart, cfg, tmp_path / "m", progress=False)
    case = heart.split("test")[0]
    maps = {}
    for mode in ("none", "volume"):
        out = tmp_path / mode
        argv = ["scribble", "predict", str(heart.path), "--model", str(tmp_path / "m" / "model.pt"), "--out", str(out)]
        assert main([*argv, "--split", "test", "--largest-component", mode, "--quiet"]) == 0
        maps[mode] = load_volume(out / "predictions" / f"{case.case_id}.nii.gz").array
        assert json.loads((out / "run.json").read_text())["config"]["largest_component"] == mode
    kept, full = maps["volume"], maps["none"]
    for c in (1, 2, 3):
        assert ndimage.label(kept == c, structure=np.ones((3, 3, 3)))[1] <= 1  # one (26-connected) component each
        assert np.all(full[kept == c] == c)  # what is kept is the unprocessed prediction
    assert (kept != full).any() and np.all(kept[kept != full] == 0)  # stray components became background
