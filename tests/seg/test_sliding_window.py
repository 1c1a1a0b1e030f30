"""The one sliding-window function: equal to whole-volume inference with one window, close with several, on the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.seg.inference import resolve_roi, segment_probs, sliding_window
from medwss.seg.train import SegTrainConfig, build, predict_probs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = SegTrainConfig(spatial_dims=3, channels=(4, 8), num_classes=2)
    image = np.random.default_rng(0).normal(size=(1, 16, 16, 12)).astype(np.float32)
    return build(cfg).eval(), cfg, image


def test_one_window_equals_whole_volume_and_output_is_on_the_host(tiny):
    model, cfg, image = tiny
    whole = predict_probs(model, [image], cfg, batch_size=1)[0]
    one = segment_probs(model, image, None, multiple=2)
    assert isinstance(one, np.ndarray) and one.shape == (2, 16, 16, 12) and one.dtype == np.float32
    np.testing.assert_allclose(one, whole, atol=1e-5)
    np.testing.assert_allclose(one.sum(0), 1.0, atol=1e-5)  # blended softmax still sums to 1


def test_several_windows_stay_close_to_whole_volume(tiny):
    model, cfg, image = tiny
    whole = predict_probs(model, [image], cfg, batch_size=1)[0]
    slid = segment_probs(model, image, (8, 8, 8), overlap=0.5, multiple=2)
    # an untrained network with instance norm: window statistics differ from the whole volume's
    assert np.abs(slid - whole).mean() < 0.1
    assert (slid.argmax(0) == whole.argmax(0)).mean() > 0.8
    np.testing.assert_allclose(slid.sum(0), 1.0, atol=1e-5)


def test_windows_run_on_the_given_device_and_the_stitched_output_is_on_the_cpu():
    seen = []

    def predictor(x: torch.Tensor) -> torch.Tensor:
        seen.append((x.device.type, tuple(x.shape)))
        return x * 2

    x = torch.ones(1, 1, 10, 10)
    out = sliding_window(predictor, x, (4, 4), 0.25, sw_device="cpu", mode="constant")
    assert out.device.type == "cpu" and out.shape == (1, 1, 10, 10)
    torch.testing.assert_close(out, x * 2)
    assert len(seen) > 1 and all(s == ("cpu", (1, 1, 4, 4)) for s in seen)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(predictor, x, (4, 4), 1.0)


def test_resolve_roi_rounds_up_and_fills_whole_axes():
    assert resolve_roi(None, (30, 17, 5), 4) == (32, 20, 8)
    assert resolve_roi((64, None, -1), (100, 50, 9), 8) == (64, 56, 16)
    assert resolve_roi(16, (20, 20), 1) == (16, 16)
    with pytest.raises(ValueError, match="axes"):
        resolve_roi((8, 8), (8, 8, 8))


def test_coin_counterfactuals_go_through_windows_with_per_slice_decisions():
    from medwss.counterfactual.generator import CounterfactualGenerator
    from medwss.counterfactual.train import counterfactuals

    torch.manual_seed(0)
    G = CounterfactualGenerator()
    for p in G.parameters():
        torch.nn.init.normal_(p, 0.0, 0.1)
    x = np.tanh(np.random.default_rng(1).normal(size=(5, 1, 32, 32))).astype(np.float32)
    dec = np.array([1, 0, 1, 1, 0])
    with torch.no_grad():
        ref = G(torch.from_numpy(x), torch.from_numpy(dec).float()).numpy()
    np.testing.assert_allclose(counterfactuals(G, x, dec, roi_size=(32, 32)), ref, atol=1e-5)
    tiled = counterfactuals(G, x, dec, batch_size=3, roi_size=(16, 16), overlap=0.5)
    assert tiled.shape == x.shape
    np.testing.assert_allclose(tiled[dec == 0], x[dec == 0], atol=1e-5)  # "normal" slices untouched
    assert np.abs(tiled[dec == 1] - x[dec == 1]).max() > 1e-3
