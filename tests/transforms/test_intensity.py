"""One intensity normaliser: named windows, percentiles, z-scores; the MONAI form maps the same way."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import InvalidDataError
from medwss.transforms.intensity import CT_WINDOWS, intensity_transform, normalise, resolve_window


def test_named_window_and_range():
    a = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    assert normalise(a, window="soft_tissue").tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert normalise(a, window=(-160, 240), out_range=(-1, 1)).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    assert resolve_window("soft_tissue") == CT_WINDOWS["soft_tissue"] == (-160.0, 240.0)
    assert resolve_window(None) is None and resolve_window("auto") is None


def test_percentile_and_zscore(rng):
    a = rng.normal(100, 20, size=(20, 20, 5)).astype(np.float32)
    p = normalise(a, "percentile")
    assert p.min() == 0.0 and p.max() == 1.0 and p.dtype == np.float32
    z = normalise(a, "zscore")
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3


@pytest.mark.parametrize("method,window", [("window", "soft_tissue"), ("window", None), ("zscore", None)])
def test_monai_form_matches(rng, method, window):
    a = rng.normal(0, 200, size=(16, 16, 4)).astype(np.float32)
    ref = normalise(a, method, window)
    out = intensity_transform("image", method, window)({"image": a[None]})["image"]
    assert np.allclose(np.asarray(out)[0], ref, atol=1e-5)


def test_bad_windows():
    with pytest.raises(InvalidDataError, match="unknown CT window 'lungs'"):
        normalise(np.zeros(3), window="lungs")
    with pytest.raises(InvalidDataError, match="empty intensity window"):
        normalise(np.zeros(3), window=(5, 5))
    with pytest.raises(InvalidDataError, match="unknown normalisation"):
        normalise(np.zeros(3), "minmax")  # type: ignore[arg-type]
