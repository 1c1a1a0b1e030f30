"""Phantom difficulty options: look-alikes, fainter tumour, stain shift (slides); tumour HU (CT); configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.data.phantoms import CTOptions, WSIOptions, generate, make_scan, make_slide
from medwss.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _od(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density per 16×16 block (the masks' grid)."""
    od = -np.log((rgb.astype(np.float64) + 1) / 256).sum(-1)
    h, w = od.shape[0] // 16, od.shape[1] // 16
    return od[: h * 16, : w * 16].reshape(h, 16, w, 16).mean(axis=(1, 3))


def test_default_options_give_the_original_slides_and_scans() -> None:
    a, b = make_slide(0, 1, scale=0.25), make_slide(0, 1, scale=0.25, options=WSIOptions())
    np.testing.assert_array_equal(a.rgb, b.rgb)  # (draw for draw as before the options: checked against HEAD)
    assert "n_lookalikes" not in a.meta
    c, d = make_scan(0, 0, scale=0.5), make_scan(0, 0, scale=0.5, options=CTOptions())
    np.testing.assert_array_equal(c.image.array, d.image.array)


def test_lookalikes_appear_in_negative_slides_and_not_in_the_mask() -> None:
    opts = WSIOptions(lookalikes=(4, 4), lookalike_um=(40, 60))
    plain, hard = make_slide(0, 0, scale=0.25, label=0), make_slide(0, 0, scale=0.25, label=0, options=opts)
    assert hard.label == 0 and not hard.tumor.any()
    assert int(hard.meta["n_lookalikes"]) >= 2  # type: ignore[call-overload]
    np.testing.assert_array_equal(plain.tissue, hard.tissue)  # the same slide otherwise
    changed = np.abs(_od(hard.rgb) - _od(plain.rgb)) > 0.3  # darker, crowded nuclei where the patches are
    assert 1 <= changed.sum() <= 0.25 * hard.tissue.sum()


def test_lookalike_balance_drops_patches_in_positive_slides() -> None:
    many = WSIOptions(lookalikes=(6, 6), lookalike_um=(40, 60), small_lesion_um=(100, 150))
    balanced = many.model_copy(update={"lookalike_balance": 1.0})
    a, b = make_slide(0, 1, scale=0.25, label=1, options=many), make_slide(0, 1, scale=0.25, label=1, options=balanced)
    assert int(b.meta["n_lookalikes"]) < int(a.meta["n_lookalikes"])  # type: ignore[call-overload]


def test_tumor_contrast_and_stain_shift() -> None:
    from medwss.data.phantoms.wsi import WSI_SITES, _shifted_stains

    def tumour_minus_stroma(contrast: float) -> float:
        s = make_slide(0, 1, scale=0.25, label=1, options=WSIOptions(tumor_contrast=contrast))
        od, tumour, tissue = _od(s.rgb), s.tumor.astype(bool), s.tissue.astype(bool)
        return float(od[tumour].mean() - od[tissue & ~tumour].mean())

    full, none = tumour_minus_stroma(1.0), tumour_minus_stroma(0.0)
    assert full > 0.2 and abs(none) < 0.1 * full
    assert _shifted_stains("site_a", 0.5) == WSI_SITES["site_a"]  # the first site is the reference
    shifted = _shifted_stains("site_b", 0.5)
    assert shifted["h_strength"] == pytest.approx(1.5 * WSI_SITES["site_b"]["h_strength"])
    b0, b1 = (
        make_slide(0, 2, 0.25, site="site_b"),
        make_slide(0, 2, 0.25, site="site_b", options=WSIOptions(stain_shift=0.5)),
    )
    tissue = np.repeat(np.repeat(b0.tissue.astype(bool), 16, 0), 16, 1)
    assert np.abs(b1.rgb[tissue].mean(0) - b0.rgb[tissue].mean(0)).max() > 5  # a visible colour shift


def test_ct_tumour_attenuation_option() -> None:
    scan = make_scan(0, 0, scale=0.5, label=1, options=CTOptions(tumor_hu=120, tumor_spread_hu=15))
    lab, hu = scan.labels.array, scan.image.array.astype(float)
    assert 100 <= np.median(hu[lab == 4]) <= 140
    assert np.median(hu[lab == 1]) < 80  # liver unchanged


def test_bad_options_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lookalikez"):
        generate("wsi", tmp_path, n=1, options={"lookalikez": [1, 2]})
    with pytest.raises(ConfigError, match="tumor_contrast"):
        generate("wsi", tmp_path, n=1, options={"tumor_contrast": 2})
    with pytest.raises(ConfigError, match="takes no options"):
        generate("mri", tmp_path, n=1, options={"tumor_hu": 100})


@pytest.mark.parametrize("name", ["phantom_wsi", "phantom_wsi_context", "phantom_ct"])
def test_phantom_configs_resolve(name: str) -> None:
    import argparse

    from medwss.cli.phantom import resolve
    from medwss.data.phantoms.common import parse_options

    args = argparse.Namespace(kind=None, config=str(CONFIGS / f"{name}.yaml"), n=None, seed=None, scale=None)
    cfg = resolve(args)
    parse_options(WSIOptions if cfg.kind == "wsi" else CTOptions, cfg.options)
