"""Volume heatmaps land on the stored grid with the stored affine, whatever the stored axis order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.data.manifest import Case
from medwss.data.orientation import permuted_copy
from medwss.embed.engine import bag_from_tiles
from medwss.embed.reader import TileReader
from medwss.embed.tiling import tile_volume
from medwss.io.resample import resample_to
from medwss.io.volume import Volume
from medwss.io.volumes import load_volume, save_nifti
from medwss.mil.heatmaps import dense_heatmap, write_case

COPIES = {"sra": ((2, 0, 1), ()), "flipped": ((1, 2, 0), (0,))}


def _case(cid: str, image: Path) -> Case:
    return Case(cid, cid, "s", "CT", {"image": image}, label=1)


def _bag_and_scores(image: Path):  # noqa: ANN202
    tiles = tile_volume(load_volume(image), "ct", "axial2d", 16, min_foreground=0.5, modality="CT")
    feats = np.zeros((len(tiles), 4), np.float32)
    bag = bag_from_tiles(TileReader(tiles, modality="CT"), feats, None, None)
    scores = np.random.default_rng(0).random(len(tiles)).astype(np.float32)  # tiles come in the same order
    return bag, scores


@pytest.mark.parametrize("name", list(COPIES))
def test_heatmap_nifti_of_a_permuted_ct(real, tmp_path, name):
    src = real / "volumes" / "example_ct_sm.nii.gz"
    ras = load_volume(src)
    axes, flip = COPIES[name]
    perm_path = save_nifti(permuted_copy(ras, axes, flip), tmp_path / f"ct_{name}.nii.gz")
    perm = load_volume(perm_path)

    bag0, s0 = _bag_and_scores(src)
    bag1, s1 = _bag_and_scores(perm_path)
    np.testing.assert_array_equal(bag0.coords, bag1.coords)
    heat0 = dense_heatmap(_case("ras", src), bag0, s0, volume=ras)
    heat1 = dense_heatmap(_case(name, perm_path), bag1, s1, volume=perm)
    assert heat1.heatmap.shape == perm.shape and heat1.extent == perm.shape
    expected = permuted_copy(Volume(heat0.heatmap, ras.affine), axes, flip).array
    np.testing.assert_array_equal(heat1.heatmap, expected)  # NaN where no tile, the same on both

    files0 = write_case(_case("ras", src), bag0, s0, tmp_path / "o0", 0.5)
    files1 = write_case(_case(name, perm_path), bag1, s1, tmp_path / "o1", 0.5)
    nii0, nii1 = load_volume(files0["nifti"]), load_volume(files1["nifti"])
    assert nii1.shape == perm.shape
    np.testing.assert_allclose(nii1.affine, perm.affine, atol=1e-5)
    np.testing.assert_array_equal(nii1.array, np.nan_to_num(expected, nan=0.0))
    world = resample_to(nii1, nii0, order=0)  # both in world space: the same heatmap
    np.testing.assert_array_equal(world.array, nii0.array)
    assert Path(files1["overlay"]).exists()
