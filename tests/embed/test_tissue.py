"""Tissue detection on slides, body masks and organ-ROI cropping of volumes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medwss.embed.tissue import (
    TissueConfig,
    TissueMask,
    body_mask,
    crop_to_labels,
    detect_tissue,
    otsu_threshold,
    save_body_png,
    save_tissue_png,
    tissue_from_rgb,
)
from medwss.errors import InvalidDataError, MissingMetadataError
from medwss.io.slide import Slide, open_slide
from medwss.io.volume import Volume


class FakeBackend:
    """A slide backend without pixels, for geometry-only tests."""

    name, vendor, objective_power, associated_names = "fake", None, None, []

    def __init__(self, dims: tuple[int, int], mpp: float | None = 0.25, downsamples=(1.0,)) -> None:
        self.level_downsamples = list(downsamples)
        self.level_dimensions = [(round(dims[0] / d), round(dims[1] / d)) for d in downsamples]
        self.properties: dict[str, str] = {}
        self.mpp = None if mpp is None else (mpp, mpp)

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        return np.full((height, width, 3), 240, np.uint8)

    def associated(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        pass


def synthetic_rgb(rng: np.random.Generator, h: int = 200, w: int = 300) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Glass with a pink tissue disc, a green and a blue pen stroke on glass, and a black dot."""
    yy, xx = np.mgrid[:h, :w]
    rgb = np.full((h, w, 3), 242.0)
    tissue = (yy - 100) ** 2 + (xx - 110) ** 2 < 60**2
    rgb[tissue] = (200, 120, 170)
    green = (np.abs(yy - 0.3 * xx - 20) < 4) & (xx > 190)
    blue = (np.abs(xx - 270) < 4) & (yy > 40)
    black = (yy - 30) ** 2 + (xx - 230) ** 2 < 6**2
    rgb[green] = (90, 190, 110)
    rgb[blue] = (90, 140, 225)
    rgb[black] = (20, 20, 25)
    rgb += rng.normal(0, 3, rgb.shape)
    parts = {"tissue": tissue, "green": green, "blue": blue, "black": black}
    return rgb.clip(0, 255).astype(np.uint8), parts


def test_otsu_threshold_splits_two_modes(rng):
    values = np.concatenate([rng.normal(0.02, 0.01, 5000), rng.normal(0.4, 0.05, 2000)])
    assert 0.08 < otsu_threshold(values) < 0.3
    assert otsu_threshold(np.full(10, 3.0)) == 3.0
    assert otsu_threshold(np.array([])) == 0.0


def test_tissue_from_rgb_keeps_tissue_drops_glass_and_ink(rng):
    rgb, parts = synthetic_rgb(rng)
    mask, pen, threshold = tissue_from_rgb(rgb, TissueConfig(), mpp=8.0)
    assert 0 < threshold < 1 and pen is not None
    iou = (mask & parts["tissue"]).sum() / (mask | parts["tissue"]).sum()
    assert iou > 0.95
    for ink in ("green", "blue", "black"):
        assert not (mask & parts[ink]).any(), ink
        assert pen[parts[ink]].mean() > 0.9, ink
    glass = ~(parts["tissue"] | parts["green"] | parts["blue"] | parts["black"])
    assert (mask & glass).sum() / glass.sum() < 0.01


def test_pen_rejection_can_be_switched_off(rng):
    rgb, parts = synthetic_rgb(rng)
    mask, pen, _ = tissue_from_rgb(rgb, TissueConfig(reject_pen=False, min_area_um2=0), mpp=8.0)
    assert pen is None
    assert mask[parts["green"]].mean() > 0.5  # saturated ink is then taken for tissue


def test_config_is_validated():
    assert TissueConfig(saturation=0.2).saturation == 0.2
    with pytest.raises(ValueError):
        TissueConfig(saturation=1.5)
    with pytest.raises(ValueError):
        TissueConfig(colour="red")  # type: ignore[call-arg]


def test_slide_without_mpp_needs_one():
    slide = Slide(FakeBackend((4000, 3000), mpp=None), Path("no_mpp.tif"))
    with pytest.raises(MissingMetadataError, match="no_mpp.tif"):
        detect_tissue(slide)
    tm = detect_tissue(Slide(FakeBackend((4000, 3000), mpp=None), Path("no_mpp.tif"), mpp=0.5))
    assert tm.fraction == 0.0  # uniform glass


def test_cmu_tissue(real, tmp_path):
    with open_slide(real / "wsi" / "cmu-1-small-region.svs") as slide:
        tm = detect_tissue(slide)
        width, height = slide.dimensions
    assert 0.2 < tm.fraction < 0.9
    h, w = tm.mask.shape
    assert tm.thumbnail.shape == (h, w, 3)
    assert tm.downsample[0] == pytest.approx(width / w) and tm.downsample[1] == pytest.approx(height / h)
    assert tm.dimensions == (width, height)
    rgb = tm.thumbnail.astype(np.float64)
    hsv = np.asarray(Image.fromarray(tm.thumbnail).convert("HSV")).astype(np.float64)
    tissue, glass = tm.mask, ~tm.mask
    assert rgb[tissue].mean() < rgb[glass].mean() - 50  # tissue is darker ...
    assert hsv[..., 1][tissue].mean() > hsv[..., 1][glass].mean() + 40  # ... and more saturated
    assert rgb[glass].mean() > 225  # what is left out is mostly white glass
    # The corners are glass.
    assert not tm.mask[:5, :5].any() and not tm.mask[-5:, :5].any()
    out = save_tissue_png(tm, tmp_path / "qa" / "cmu_tissue.png")
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and max(image.shape[:2]) >= 512
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.fixture(scope="module")
def wsi_phantoms(tmp_path_factory) -> Path:
    from medwss.data.phantoms import generate

    return generate("wsi", tmp_path_factory.mktemp("wsi"), n=4, seed=0, scale=0.5, progress=False)


def _on_grid(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A detected mask resampled onto the ground truth's grid (area average >= 0.5)."""
    image = Image.fromarray(mask.astype(np.float32)).resize(shape[::-1], Image.Resampling.BOX)
    return np.asarray(image) >= 0.5


def test_phantom_tissue_matches_ground_truth_and_excludes_pen(wsi_phantoms):
    from medwss.data.phantoms import make_slide

    rows = list(csv.DictReader(io.StringIO(wsi_phantoms.read_text())))
    root = wsi_phantoms.parent
    n_pen = 0
    for row in rows:
        with open_slide(root / row["image"]) as slide:
            tm = detect_tissue(slide)
        truth = np.asarray(Image.open(root / row["meta_tissue"])) > 0
        found = _on_grid(tm.mask, truth.shape)
        iou = (found & truth).sum() / (found | truth).sum()
        assert iou > 0.85, (row["case_id"], iou)
        if row["meta_pen"]:
            n_pen += 1
            ink = make_slide(0, int(row["case_id"][-3:]), 0.5, site=row["site"]).ink > 0
            on_glass = ink & ~ndimage.binary_dilation(truth)  # the ground truth's edge pixels are ambiguous
            assert on_glass.sum() > 20
            assert (found & on_glass).sum() <= 0.02 * on_glass.sum(), row["case_id"]
            assert tm.pen is not None and _on_grid(tm.pen, truth.shape)[on_glass].mean() > 0.8
    assert n_pen >= 1  # seed 0 at scale 0.5 draws pen on wsi_000 (blue) and wsi_003 (green)


# --- volumes ------------------------------------------------------------------------------------


def test_ct_body_mask_excludes_air(real, tmp_path):
    from medwss.io.volumes import load_volume

    ct = load_volume(real / "volumes" / "example_ct_sm.nii.gz")
    mask = body_mask(ct, "CT")
    hu = ct.array.astype(np.float64)
    assert mask.shape == ct.shape and mask.dtype == bool
    assert 0.3 < mask.mean() < 0.95
    assert hu[~mask].mean() < -800 and hu[mask].mean() > -300
    labels, _ = ndimage.label(hu < -500)
    border = np.unique(
        np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()])
    )
    outside_air = np.isin(labels, border[border > 0])
    assert (mask & outside_air).sum() < 0.01 * outside_air.sum()
    assert not mask[:3, :3].any() and not mask[-3:, -3:].any()
    png = save_body_png(ct, mask, tmp_path / "ct_tissue.png", "CT")
    assert png.exists()


def test_mr_body_mask_keeps_largest_filled_component(rng):
    shape = (48, 40, 10)
    i, j, k = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((i - 24) / 18) ** 2 + ((j - 20) / 14) ** 2 < 1
    hole = ((i - 24) / 5) ** 2 + ((j - 20) / 4) ** 2 < 1
    blob = ((i - 3) ** 2 + (j - 3) ** 2 < 3) & (k < 3)
    array = rng.normal(20, 5, shape)
    array[body] = rng.normal(300, 20, body.sum())
    array[hole] = rng.normal(20, 5, hole.sum())  # air inside (rectum, bowel)
    array[blob] = 400
    mask = body_mask(Volume(array.astype(np.float32), np.eye(4), {"modality": "MR"}))
    assert (mask == body).mean() > 0.98
    assert not mask[blob].any()
    assert mask[hole].all()


def test_crop_to_labels_keeps_world_coordinates(real):
    from medwss.io.volumes import load_volume

    ct = load_volume(real / "volumes" / "example_ct_sm.nii.gz")
    seg = load_volume(real / "volumes" / "example_seg.nii.gz")
    crop = crop_to_labels(ct, seg, [2, 3], margin_mm=10.0)
    seg_crop = crop_to_labels(seg, seg, [2, 3], margin_mm=10.0)
    offset = np.array(crop.metadata["crop_offset"])
    kidneys = np.isin(seg.array, [2, 3])
    assert np.isin(seg_crop.array, [2, 3]).sum() == kidneys.sum() > 7000
    assert all(c <= s for c, s in zip(crop.shape, ct.shape, strict=True)) and crop.shape != ct.shape
    assert crop.spacing == pytest.approx(ct.spacing)
    # Margins: at least 10 mm (4 voxels at 3 mm) around the kidneys unless the grid ends.
    idx = np.argwhere(kidneys)
    lo, hi = idx.min(0), idx.max(0)
    for a in range(3):
        assert offset[a] == max(0, lo[a] - 4)
        assert offset[a] + crop.shape[a] == min(ct.shape[a], hi[a] + 1 + 4)
    rng = np.random.default_rng(0)
    for v in rng.integers(0, crop.shape[:3], size=(20, 3)):
        original = v + offset
        assert crop.array[tuple(v)] == ct.array[tuple(original)]
        world_crop = crop.affine @ np.r_[v, 1]
        world_orig = ct.affine @ np.r_[original, 1]
        np.testing.assert_allclose(world_crop, world_orig, atol=1e-6)


def test_crop_to_labels_errors(real, tmp_path):
    from medwss.io.volumes import load_volume

    seg = load_volume(real / "volumes" / "example_seg.nii.gz")
    with pytest.raises(InvalidDataError, match="example_seg"):
        crop_to_labels(seg, seg, [999], 5.0)
    other = Volume(seg.array, seg.affine @ np.diag([2.0, 1, 1, 1]), path="shifted.nii.gz")
    with pytest.raises(InvalidDataError, match="another grid"):
        crop_to_labels(seg, other, [2], 5.0)
    with pytest.raises(InvalidDataError, match="shape"):
        crop_to_labels(seg, np.zeros((3, 3, 3)), [2], 5.0)


def test_tissue_mask_fraction_of_empty_mask():
    tm = TissueMask(np.zeros((4, 5), bool), (10.0, 10.0), np.zeros((4, 5, 3), np.uint8))
    assert tm.fraction == 0.0 and tm.dimensions == (50, 40)
