"""TileReader: slide tiles at the tile set's mpp; volume tiles normalised, multi-channel on one grid."""

from __future__ import annotations

import pickle

import numpy as np

from medwss.embed.reader import TileReader
from medwss.embed.tiles import TileSet
from medwss.io import Volume, open_slide, save_nifti
from medwss.transforms.intensity import normalise


def test_slide_tiles_match_read_region_mpp(real):
    path = real / "wsi" / "cmu-1-small-region.svs"
    coords = np.array([[0, 0], [1000, 1200], [2100, 2900]])  # the last one runs off the edge
    tiles = TileSet("cmu", str(path), "slide", coords, np.zeros((3, 2)), (1, 3), (64,), np.ones(3), mpp=1.0, level=0)
    reader = TileReader(tiles)
    with open_slide(path) as s:
        for i, (x, y) in enumerate(coords):
            expected = s.read_region_mpp((int(x), int(y)), (64, 64), 1.0).transpose(2, 0, 1) / 255.0
            got = reader.read(i)
            assert got.shape == (3, 64, 64) and got.dtype == np.float32
            np.testing.assert_allclose(got, expected, atol=1e-6)
    assert reader.read(2)[:, -10:, -10:].min() == 1.0  # outside the slide: white
    clone = pickle.loads(pickle.dumps(reader))  # sent to a worker: the handle is reopened there
    assert clone._slide is None and clone.read(1).shape == (3, 64, 64)


def _ct(tmp_path, rng):
    arr = rng.integers(-1000, 1000, (20, 20, 10)).astype(np.int16)
    return save_nifti(Volume(arr, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "ct.nii.gz"), arr


def test_volume_tile_kinds(tmp_path, rng):
    path, arr = _ct(tmp_path, rng)
    norm = normalise(arr, window="abdomen")
    coords = np.array([[2, 3, 4]])
    for kind, size, shape in [
        ("axial2d", (8, 8, 1), (1, 8, 8)),
        ("stack25d", (8, 8, 3), (3, 8, 8)),
        ("patch3d", (8, 8, 4), (1, 8, 8, 4)),
    ]:
        t = TileSet("c", str(path), kind, coords, np.zeros((1, 3)), (1, 1, 1), size, [1.0], spacing=(1, 1, 2))
        tile = TileReader(t, modality="CT").read(0)
        assert tile.shape == shape
        if kind == "axial2d":
            np.testing.assert_allclose(tile[0], norm[2:10, 3:11, 4])
        if kind == "stack25d":
            np.testing.assert_allclose(tile[2], norm[2:10, 3:11, 6])
    edge = TileSet("c", str(path), "axial2d", [[16, 16, 0]], [[0, 0, 0]], (1, 1, 1), (8, 8, 1), [1.0])
    tile = TileReader(edge, modality="CT").read(0)
    assert (tile[0, 4:, :] == 0).all() and (tile[0, :, 4:] == 0).all()  # zero beyond the volume


def test_ct_window_and_percentiles(tmp_path):
    hu = np.array([-1000, -200, 50, 300, 1000], np.int16)[:, None, None] * np.ones((1, 2, 2), np.int16)
    path = save_nifti(Volume(hu, np.eye(4)), tmp_path / "hu.nii.gz")
    tiles = TileSet("c", str(path), "patch3d", [[0, 0, 0]], [[0, 0, 0]], (1, 1, 1), (5, 2, 2), [1.0])
    np.testing.assert_allclose(TileReader(tiles, modality="CT").read(0)[0, :, 0, 0], [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(
        TileReader(tiles, modality="CT", ct_window=(-1000, 1000)).read(0)[0, :, 0, 0], [0, 0.4, 0.525, 0.65, 1]
    )
    mr = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    path = save_nifti(Volume(mr, np.eye(4)), tmp_path / "mr.nii.gz")
    tiles = TileSet("m", str(path), "patch3d", [[0, 0, 0]], [[0, 0, 0]], (1, 1, 1), (10, 10, 10), [1.0])
    out = TileReader(tiles, modality="MR").read(0)[0]
    np.testing.assert_allclose(out, normalise(mr, "percentile"))
    assert out.min() == 0 and out.max() == 1 and 0.45 < out[5, 0, 0] < 0.55


def test_multichannel_resampled_to_first(tmp_path, rng):
    t2 = save_nifti(
        Volume(rng.random((16, 16, 4)).astype(np.float32), np.diag([0.5, 0.5, 3, 1])), tmp_path / "t2.nii.gz"
    )
    adc_arr = np.ones((4, 4, 4), np.float32) * np.arange(4)[:, None, None]
    adc = save_nifti(Volume(adc_arr, np.diag([2.0, 2.0, 3, 1])), tmp_path / "adc.nii.gz")
    tiles = TileSet("m", str(t2), "axial2d", [[0, 0, 1]], [[0, 0, 0]], (1, 1, 1), (16, 16, 1), [1.0])
    tile = TileReader(tiles, {"t2": t2, "adc": adc}, modality="MR").read(0)
    assert tile.shape == (2, 16, 16)
    assert tile[1, 0, 0] < tile[1, 6, 0] < tile[1, 10, 0]  # the ADC ramp along i survives resampling to the T2 grid
