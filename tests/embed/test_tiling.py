"""Tiling slides (target mpp, tissue fraction, overlap, levels) and volumes (2D, 2.5D, 3D)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medwss.embed.reader import TileReader
from medwss.embed.tiles import load_tiles, save_tiles
from medwss.embed.tiling import grid_starts, mask_fractions, patch_size, tile_slide, tile_volume, tiles_png
from medwss.embed.tissue import TissueMask, detect_tissue
from medwss.io.slide import Slide, open_slide
from medwss.io.volume import Volume
from tests.embed.test_tissue import FakeBackend


def fake_slide(dims=(100_000, 80_000), mpp=0.25, downsamples=(1.0, 4.0, 16.0)) -> Slide:
    return Slide(FakeBackend(dims, mpp, downsamples), Path("fake.svs"))


def ellipse_mask(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((xx - w / 2) / (0.45 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 < 1


def tissue_for(slide: Slide, mask: np.ndarray) -> TissueMask:
    w0, h0 = slide.dimensions
    h, w = mask.shape
    return TissueMask(mask, (w0 / w, h0 / h), np.full((h, w, 3), 240, np.uint8))


def test_grid_starts_cover_the_image():
    np.testing.assert_allclose(grid_starts(100, 10, 10), np.arange(10) * 10.0)
    np.testing.assert_allclose(grid_starts(105, 10, 10), np.arange(11) * 10.0)  # last tile sticks out
    np.testing.assert_allclose(grid_starts(100, 10, 5), np.arange(19) * 5.0)
    np.testing.assert_allclose(grid_starts(7, 10, 5), [0.0])


def test_mask_fractions_equal_brute_force(rng):
    mask = rng.random((23, 31)) < 0.4
    f = 4  # level-0 pixels per mask pixel
    big = np.repeat(np.repeat(mask, f, 0), f, 1)
    span = 13
    ys, xs = grid_starts(23 * f, span, 7), grid_starts(31 * f, span, 7)
    got = mask_fractions(mask, (ys / f, xs / f), (span / f, span / f))
    want = np.array([[big[int(y) : int(y) + span, int(x) : int(x) + span].sum() / span**2 for x in xs] for y in ys])
    np.testing.assert_allclose(got, want, atol=1e-9)
    vol = rng.random((9, 8, 7)) < 0.5
    got3 = mask_fractions(vol, (np.arange(0, 9, 3), np.arange(0, 8, 4), np.arange(-1, 7)), (3, 4, 3))
    padded = np.pad(vol, ((0, 3), (0, 4), (1, 3)))
    want3 = np.array(
        [
            [[padded[i : i + 3, j : j + 4, k + 1 : k + 4].mean() for k in range(-1, 7)] for j in range(0, 8, 4)]
            for i in range(0, 9, 3)
        ]
    )
    np.testing.assert_allclose(got3, want3, atol=1e-9)


def test_tile_slide_geometry_and_overlap():
    slide = fake_slide((20_000, 16_000), mpp=0.25)
    tissue = tissue_for(slide, ellipse_mask(400, 500))
    ts = tile_slide(slide, "c", tile_size=224, mpp=0.5, min_tissue=0.5, tissue=tissue)
    assert ts.kind == "slide" and ts.span == pytest.approx(448) and ts.tile_size == (224,) and ts.mpp == 0.5
    assert ts.grid_shape == (36, 45)  # ceil((16000 - 448) / 448) + 1, ceil((20000 - 448) / 448) + 1
    assert (ts.tissue_fraction >= 0.5).all() and len(ts) > 0.5 * np.prod(ts.grid_shape) * 0.5
    np.testing.assert_array_equal(ts.coords, np.round(ts.grid_index[:, ::-1] * 448.0))
    half = tile_slide(slide, "c", tile_size=224, mpp=0.5, overlap=0.5, min_tissue=0.5, tissue=tissue)
    steps = np.diff(np.unique(half.coords[:, 0]))
    assert np.all(np.abs(steps - ts.span / 2) <= 1) and steps.min() == 224
    assert half.attrs["stride"] == pytest.approx(224)
    assert len(half) == pytest.approx(4 * len(ts), rel=0.1)


def test_tile_slide_levels_follow_mpp():
    slide = fake_slide((20_000, 16_000), mpp=0.25, downsamples=(1.0, 4.0, 16.0))
    tissue = tissue_for(slide, ellipse_mask(400, 500))
    levels = [tile_slide(slide, "c", mpp=m, tissue=tissue).level for m in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert levels == [0, 0, 1, 1, 2, 2]


def test_tile_slide_100k_tiles_fast():
    slide = fake_slide((100_000, 80_000), mpp=0.25)
    tissue = tissue_for(slide, ellipse_mask(3277, 4096))
    start = time.perf_counter()
    ts = tile_slide(slide, "big", tile_size=224, mpp=0.25, tissue=tissue)
    elapsed = time.perf_counter() - start
    assert len(ts) > 90_000
    assert elapsed < 5.0, elapsed  # about 0.3 s on an idle machine: no Python loop per tile


def test_tile_slide_rejects_bad_arguments():
    slide = fake_slide((2000, 2000))
    tissue = tissue_for(slide, ellipse_mask(100, 100))
    for kwargs in ({"overlap": 1.0}, {"mpp": 0}, {"tile_size": 0}, {"min_tissue": 2}):
        with pytest.raises(ValueError, match="fake.svs"):
            tile_slide(slide, "c", tissue=tissue, **kwargs)


def test_cmu_tiles_lie_in_tissue(real, tmp_path):
    with open_slide(real / "wsi" / "cmu-1-small-region.svs") as slide:
        tissue = detect_tissue(slide)
        ts = tile_slide(slide, "cmu", tile_size=224, mpp=0.5, min_tissue=0.25, tissue=tissue)
        pixels = [slide.read_region_mpp(tuple(c), (224, 224), 0.5) for c in ts.coords]
    assert ts.level == 0 and ts.span == pytest.approx(224 * 0.5 / 0.499)
    assert (ts.tissue_fraction >= 0.25).all()
    expected = tissue.fraction * 2220 * 2967 / ts.span**2  # tissue area in tiles
    assert 0.6 * expected < len(ts) < 1.6 * expected, (len(ts), expected)
    # Tiles hold stained pixels, not glass.
    stained = [(np.asarray(Image.fromarray(p).convert("HSV"))[..., 1] > 40).mean() for p in pixels]
    assert min(stained) > 0.1 and np.median(stained) > 0.5
    # Round trip through HDF5 keeps everything.
    back = load_tiles(save_tiles(ts, tmp_path / "cmu.tiles.h5"))
    np.testing.assert_array_equal(back.coords, ts.coords)
    np.testing.assert_array_equal(back.grid_index, ts.grid_index)
    assert back.grid_shape == ts.grid_shape and back.span == pytest.approx(ts.span) and back.level == 0
    assert back.attrs["dimensions"] == [2220, 2967]
    png = tiles_png(tissue, ts, tmp_path / "qa" / "cmu_tiles.png")
    assert np.asarray(Image.open(png)).ndim == 3
    png2 = tiles_png(tissue.thumbnail, ts, tmp_path / "qa" / "cmu_tiles2.png")
    assert Image.open(png2).size == Image.open(png).size


def test_phantom_coarser_mpp_reads_coarser_level(tmp_path):
    from medwss.data.phantoms import generate

    manifest = generate("wsi", tmp_path, n=1, seed=0, scale=0.5, progress=False)
    with open_slide(manifest.parent / "slides" / "wsi_000.tif") as slide:
        assert slide.level_downsamples[:2] == [1.0, 2.0]
        tissue = detect_tissue(slide)
        fine = tile_slide(slide, "p", mpp=0.5, tissue=tissue)
        coarse = tile_slide(slide, "p", mpp=1.0, tissue=tissue)
        assert fine.level == 0 and coarse.level == 1
        assert coarse.span == pytest.approx(2 * fine.span)
        assert len(fine) > 0 and len(coarse) > 0
        tile = TileReader(coarse).read(0)
        assert tile.shape == (3, 224, 224)


# --- volumes ------------------------------------------------------------------------------------


@pytest.fixture
def box_volume(rng, tmp_path) -> tuple[Volume, np.ndarray]:
    from medwss.io.volumes import save_nifti

    shape = (40, 36, 12)
    fg = np.zeros(shape, bool)
    fg[8:32, 4:30, 2:10] = True
    array = np.where(fg, 300.0, 0.0) + rng.normal(0, 5, shape)
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    affine[:3, 3] = (-20, 10, 5)
    path = save_nifti(Volume(array.astype(np.float32), affine), tmp_path / "box.nii.gz")
    return Volume(array.astype(np.float32), affine, {"modality": "MR"}, str(path)), fg


def test_tile_volume_axial2d(box_volume):
    volume, fg = box_volume
    ts = tile_volume(volume, "v", "axial2d", tile_size=8, min_foreground=0.5, foreground=fg)
    assert ts.kind == "axial2d" and ts.tile_size == (8, 8, 1) and ts.grid_shape == (5, 5, 12)
    assert ts.spacing == pytest.approx((1.0, 1.0, 2.5))
    np.testing.assert_array_equal(ts.coords, ts.grid_index * [8, 8, 1])
    assert set(ts.coords[:, 2]) == set(range(2, 10))
    assert (ts.tissue_fraction >= 0.5).all()
    assert TileReader(ts, modality="MR").read(0).shape == (1, 8, 8)
    default = tile_volume(volume, "v", "axial2d", tile_size=8, min_foreground=0.6)  # from the body mask
    assert len(default) == len(tile_volume(volume, "v", "axial2d", tile_size=8, min_foreground=0.6, foreground=fg))


def test_tile_volume_stack25d_centres_stacks(box_volume):
    volume, fg = box_volume
    ts = tile_volume(volume, "v", "stack25d", tile_size=(8, 12), depth=3, foreground=fg)
    assert ts.tile_size == (8, 12, 3) and ts.grid_shape == (5, 3, 12)
    np.testing.assert_array_equal(ts.coords[:, 2], ts.grid_index[:, 2] - 1)  # first slice = centre - 1
    assert set(ts.grid_index[:, 2]) == set(range(2, 10))
    assert TileReader(ts, modality="MR").read(0).shape == (3, 8, 12)


def test_tile_volume_patch3d_and_tile_mm(box_volume):
    volume, fg = box_volume
    ts = tile_volume(volume, "v", "patch3d", tile_size=(8, 8, 4), foreground=fg)
    assert ts.kind == "patch3d" and ts.tile_size == (8, 8, 4) and ts.grid_shape == (5, 5, 3)
    np.testing.assert_array_equal(ts.coords, ts.grid_index * [8, 8, 4])
    assert TileReader(ts, modality="MR").read(0).shape == (1, 8, 8, 4)
    mm = tile_volume(volume, "v", "patch3d", tile_mm=10.0, foreground=fg)
    assert mm.tile_size == (10, 10, 4)  # 10 mm at 1 x 1 x 2.5 mm
    assert patch_size("axial2d", volume.spacing, tile_mm=(6.0, 8.0)) == (6, 8, 1)
    strided = tile_volume(volume, "v", "patch3d", tile_size=8, stride=4, foreground=fg)
    assert strided.tile_size == (8, 8, 8) and np.diff(np.unique(strided.coords[:, 0])).max() == 4
    with pytest.raises(ValueError, match="mode"):
        tile_volume(volume, "v", "cubes", foreground=fg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="foreground shape"):
        tile_volume(volume, "v", foreground=fg[:-1])


def test_ct_tiles_inside_body(real, tmp_path):
    from medwss.embed.tissue import body_mask
    from medwss.io.volumes import load_volume

    ct = load_volume(real / "volumes" / "example_ct_sm.nii.gz")
    body = body_mask(ct, "CT")
    ts = tile_volume(ct, "ct", "axial2d", tile_size=16, min_foreground=0.5, modality="CT")
    assert len(ts) > 100 and (ts.tissue_fraction >= 0.5).all()
    for (i, j, k), f in zip(ts.coords[:50], ts.tissue_fraction[:50], strict=True):
        assert body[i : i + 16, j : j + 16, k].sum() / 256 == pytest.approx(f)
    png = tiles_png(ct, ts, tmp_path / "ct_tiles.png")
    assert np.asarray(Image.open(png)).shape[0] >= 256
