"""Heatmap exports (pyramidal TIFF, GeoJSON contours, NIfTI, score tables) and PNG overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medwss.eval.heatmap import heatmap_shape
from medwss.io.annotations import polygons_to_mask, read_geojson
from medwss.io.slide import open_slide
from medwss.viz.exports import (
    export_geojson_contours,
    export_heatmap_tiff,
    export_nifti_heatmap,
    export_scores_table,
    read_heatmap_tiff,
    read_scores_table,
)
from medwss.viz.overlay import colorize, heatmap_overlay_png, pick_slices, volume_montage_png


def _blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    heat = np.zeros(shape)
    for _ in range(3):
        r, c = rng.uniform(0.2, 0.8) * shape[0], rng.uniform(0.2, 0.8) * shape[1]
        s = rng.uniform(0.05, 0.12) * min(shape)
        heat = np.maximum(heat, np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s**2)))
    return heat


# --- pyramidal TIFF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["rgb", "gray"])
def test_heatmap_tiff_opens_with_openslide_and_matches_the_slide_extent(tmp_path: Path, mode: str) -> None:
    import openslide

    dims, ds, mpp0 = (4010, 3005), 16.0, 0.25  # not a multiple of the downsample
    heat = _blobs(heatmap_shape(dims, ds))
    heat[:3, :3] = np.nan
    path = export_heatmap_tiff(heat, ds, dims, mpp0, tmp_path / "heat.tif", mode=mode)
    with openslide.OpenSlide(str(path)) as slide:
        w, h = slide.dimensions
        mpp_x = float(slide.properties["openslide.mpp-x"])
        mpp_y = float(slide.properties["openslide.mpp-y"])
        assert (h, w) == heat.shape
        assert mpp_x == pytest.approx(mpp0 * ds) and mpp_y == pytest.approx(mpp0 * ds)
        # physical extent equals the slide's within one heatmap pixel
        assert abs(w * mpp_x - dims[0] * mpp0) < mpp_x
        assert abs(h * mpp_y - dims[1] * mpp0) < mpp_y
        assert "medwss heatmap" in slide.properties["tiff.ImageDescription"]
    with open_slide(path) as slide:  # medwss's own reader too
        assert slide.dimensions == (heat.shape[1], heat.shape[0]) and slide.mpp == pytest.approx(mpp0 * ds)
    pixels, info = read_heatmap_tiff(path)
    assert info["downsample"] == ds and info["level0_width"] == dims[0] and info["mpp"] == pytest.approx(4.0)
    if mode == "gray":
        expected = np.round(np.nan_to_num(heat) * 255).astype(np.uint8)
        assert np.array_equal(pixels, expected)
    else:
        rgb, _ = colorize(heat[100:110, 100:110])
        assert np.array_equal(pixels[100:110, 100:110], rgb)  # lossless
        assert (pixels[:3, :3] == 0).all()


def test_heatmap_tiff_large_heatmap_gets_a_pyramid(tmp_path: Path) -> None:
    import tifffile

    dims, ds = (8192, 6144), 8.0
    heat = _blobs(heatmap_shape(dims, ds))
    path = export_heatmap_tiff(heat, ds, dims, 0.5, tmp_path / "heat.tif", mode="gray")
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(768, 1024), (384, 512)]
        assert tif.pages.first.is_tiled


def test_heatmap_tiff_rejects_a_heatmap_of_another_slide(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not cover"):
        export_heatmap_tiff(np.zeros((10, 10)), 16, (4000, 3000), 0.5, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


# --- GeoJSON ----------------------------------------------------------------------------------------
def test_geojson_contours_round_trip(tmp_path: Path) -> None:
    ds, threshold = 32.0, 0.5
    heat = _blobs((90, 120), seed=2)
    heat[0:5, 0:5] = np.nan
    path = export_geojson_contours(heat, ds, threshold, tmp_path / "heat.geojson", name="Tumor")
    polygons = read_geojson(path, classification="Tumor")
    assert polygons
    inside = heat >= threshold
    back = polygons_to_mask(polygons, heat.shape, ds)
    iou = (back & inside).sum() / (back | inside).sum()
    assert iou > 0.9
    # coordinates are level-0 pixels
    xs = np.concatenate([p[:, 0] for p in polygons])
    assert xs.max() <= 120 * ds and xs.max() > 120


# --- NIfTI ------------------------------------------------------------------------------------------
def test_nifti_heatmap_keeps_the_affine(tmp_path: Path) -> None:
    import nibabel as nib

    affine = np.array([[-0.8, 0, 0, 120.5], [0, -0.8, 0, 90.25], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    heat = np.random.default_rng(0).random((16, 12, 8)).astype(np.float32)
    heat[0, 0, 0] = np.nan
    path = export_nifti_heatmap(heat, affine, tmp_path / "heat.nii.gz")
    img = nib.load(str(path))
    assert np.allclose(img.affine, affine)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32 and data[0, 0, 0] == 0.0
    assert np.array_equal(data[1:], heat[1:])
    with pytest.raises(ValueError, match="3D"):
        export_nifti_heatmap(heat[0], affine, tmp_path / "bad.nii.gz")


# --- score tables -----------------------------------------------------------------------------------
def test_scores_table_csv_and_h5(tmp_path: Path) -> None:
    coords = np.array([[0, 0], [256, 0], [0, 256]], dtype=np.int64)
    scores = np.array([0.1, 0.25, 0.987654321])
    written = export_scores_table(
        "case_7", coords, scores, tmp_path / "s.csv", tmp_path / "s.h5", attrs={"span": 256, "mpp": 0.5}
    )
    assert written == [tmp_path / "s.csv", tmp_path / "s.h5"]
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["x"] for r in rows] == ["0", "256", "0"] and rows[0]["case_id"] == "case_7"
    assert float(rows[2]["score"]) == pytest.approx(0.987654, abs=1e-6)
    case_id, c, s, attrs = read_scores_table(tmp_path / "s.h5")
    assert case_id == "case_7" and np.array_equal(c, coords) and np.allclose(s, scores)
    assert attrs["span"] == 256 and attrs["coord_names"] == "x,y"
    export_scores_table("vol", np.zeros((2, 3), int), np.ones((2, 2)), path_csv=tmp_path / "v.csv")
    assert (tmp_path / "v.csv").read_text().splitlines()[0] == "case_id,i,j,k,score_0,score_1"


# --- overlays ---------------------------------------------------------------------------------------
def test_heatmap_overlay_png_has_the_thumbnail_size(tmp_path: Path) -> None:
    from PIL import Image

    thumb = np.full((150, 200, 3), 230, dtype=np.uint8)
    heat = np.full((30, 40), np.nan)
    heat[:15, :20] = 1.0
    path = heatmap_overlay_png(thumb, heat, tmp_path / "o.png", alpha=1.0)
    img = np.asarray(Image.open(path))
    assert img.shape == (150, 200, 3)
    top = colorize(np.array([1.0]))[0][0]
    assert np.array_equal(img[10, 10], top)  # painted with the colour of 1.0
    assert np.array_equal(img[140, 190], thumb[140, 190])  # NaN leaves the thumbnail
    wide = np.asarray(Image.open(heatmap_overlay_png(thumb, heat, tmp_path / "c.png", colorbar=True)))
    assert wide.shape[0] == 150 and wide.shape[1] > 200


def test_heatmap_overlay_follows_slide_geometry(tmp_path: Path) -> None:
    from PIL import Image

    dims, ds = (1000, 500), 64  # grid 8 × 16 reaches 24 level-0 px past the right edge
    heat = np.zeros(heatmap_shape(dims, ds))
    heat[:, -1] = 1.0  # the last column covers level-0 x ≥ 960
    thumb = np.zeros((50, 100, 3), dtype=np.uint8)
    img = np.asarray(
        Image.open(heatmap_overlay_png(thumb, heat, tmp_path / "g.png", 1.0, downsample=ds, dims_level0=dims))
    )
    hot = colorize(np.array([1.0]))[0][0]
    painted = np.flatnonzero((img[25] == hot).all(axis=1))
    assert painted.min() == 96  # thumbnail px 96 is centred at level-0 x = 965


def test_volume_montage_picks_the_hottest_slices(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    vol = rng.normal(40, 20, (32, 24, 20))
    heat = np.zeros_like(vol)
    heat[10:20, 8:16, 5] = 0.9
    heat[10:20, 8:16, 14] = 0.6
    heat[:, :, 0] = np.nan
    assert pick_slices(heat, 2) == [5, 14]
    path = volume_montage_png(vol, heat, tmp_path / "m.png", n_slices=3, window=(-160, 240), columns=2)
    img = np.asarray(Image.open(path))
    zoom = int(np.ceil(192 / 24))
    panel_h, panel_w = 24 * zoom, 32 * zoom  # (I, J) slices shown transposed: J rows, I columns
    assert img.shape == (2 * panel_h + 2, 2 * panel_w + 2, 3)
    with pytest.raises(ValueError, match="one shape"):
        volume_montage_png(vol, heat[:-1], tmp_path / "bad.png")


def test_volume_montage_reorients_to_radiological_view(tmp_path: Path) -> None:
    from PIL import Image

    vol = np.zeros((16, 12, 6))
    vol[14:16, 10:12, 3] = 100.0  # high i (patient's right in RAS) and high j (anterior)
    heat = np.full(vol.shape, np.nan)
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    kw = {"window": (0.0, 100.0), "slices": [3], "min_panel": 1, "captions": False}
    a = np.asarray(Image.open(volume_montage_png(vol, heat, tmp_path / "a.png", affine=ras, **kw)))
    assert (a[:2, :2] == 255).all() and (a[2:, 2:] == 0).all()  # top left: anterior, patient's right
    # the same image stored left-posterior (LPS-like) gives the same picture once reoriented
    lps = ras.copy()
    lps[:2, :2] = -np.eye(2)
    lps[:2, 3] = [15.0, 11.0]
    b_path = volume_montage_png(vol[::-1, ::-1], heat, tmp_path / "b.png", affine=lps, **kw)
    assert np.array_equal(np.asarray(Image.open(b_path)), a)
