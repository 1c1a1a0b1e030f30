"""Volume tiling on the canonical RAS+ grid: a CT stored with its axes in another order gives the same tiles."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medwss.cli.tile import VOLUME_TILE_SIZE
from medwss.data.orientation import orientation_of, permuted_copy
from medwss.embed.reader import TileReader
from medwss.embed.tiles import load_tiles, save_tiles
from medwss.embed.tiling import tile_volume, tiles_png
from medwss.embed.tissue import body_mask, save_body_png
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume
from medwss.io.volumes import load_volume, save_nifti

# (axes, flipped axes, stored orientation code) of the copies written to disk
COPIES = {"sra": ((2, 0, 1), (), "SRA"), "flipped": ((1, 2, 0), (0,), "PSR")}


@pytest.fixture(scope="module")
def ct_files(real: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real CT (RAS) and permuted copies of it written as NIfTI (same world geometry)."""
    src = real / "volumes" / "example_ct_sm.nii.gz"
    ct = load_volume(src)
    out = tmp_path_factory.mktemp("oriented")
    files = {"ras": src}
    for name, (axes, flip, _) in COPIES.items():
        files[name] = save_nifti(permuted_copy(ct, axes, flip), out / f"ct_{name}.nii.gz")
    return files


@pytest.mark.parametrize("name", list(COPIES))
def test_permuted_copies_are_stored_in_another_order(ct_files, name):
    vol = load_volume(ct_files[name])
    axes, _, code = COPIES[name]
    assert orientation_of(vol).codes == code
    assert vol.shape == tuple((122, 101, 30)[a] for a in axes)


@pytest.mark.parametrize("mode", ["axial2d", "stack25d", "patch3d"])
def test_permuted_ct_gives_the_same_tiles(ct_files, mode, tmp_path):
    ras = tile_volume(load_volume(ct_files["ras"]), "ct", mode, VOLUME_TILE_SIZE, modality="CT")
    if mode == "axial2d":  # the CLI default: 32-voxel tiles on every one of the 30 axial slices
        assert ras.grid_shape == (4, 4, 30) and len(ras) == 300
    assert ras.attrs["source_orientation"] == "RAS" and ras.orientation is not None and ras.orientation.identity
    for name, (_, _, code) in COPIES.items():
        vol = load_volume(ct_files[name])
        got = tile_volume(vol, "ct", mode, VOLUME_TILE_SIZE, modality="CT")
        assert got.grid_shape == ras.grid_shape and got.tile_size == ras.tile_size
        np.testing.assert_array_equal(got.coords, ras.coords)
        np.testing.assert_array_equal(got.grid_index, ras.grid_index)
        np.testing.assert_allclose(got.tissue_fraction, ras.tissue_fraction, atol=1e-6)
        assert got.spacing == ras.spacing and got.attrs["shape"] == [122, 101, 30]
        assert got.attrs["source_orientation"] == code
        back = load_tiles(save_tiles(got, tmp_path / f"{name}.tiles.h5")).orientation  # survives the file
        assert back is not None and back.codes == code and back.shape == vol.shape
        np.testing.assert_allclose(back.affine, vol.affine)


def test_16_voxel_axial_grid_of_the_issue(ct_files):
    # issue 12 measured 2×8×101 on the SRA copy: tiles cut along the anterior axis
    for name in ct_files:
        tiles = tile_volume(load_volume(ct_files[name]), "ct", "axial2d", 16, modality="CT")
        assert tiles.grid_shape == (8, 7, 30) and len(tiles) == 1132, name


def test_body_mask_follows_the_stored_order(ct_files, tmp_path):
    ras = load_volume(ct_files["ras"])
    mask = body_mask(ras, "CT")
    for name, (axes, flip, _) in COPIES.items():
        vol = load_volume(ct_files[name])
        got = body_mask(vol, "CT")
        expected = permuted_copy(Volume(mask.astype(np.uint8), ras.affine), axes, flip).array.astype(bool)
        np.testing.assert_array_equal(got, expected)
        # a foreground given on the stored grid is moved to the canonical grid with the volume
        fg = np.zeros(vol.shape, bool)
        fg[tuple(slice(0, n // 2) for n in vol.shape)] = True
        tiles = tile_volume(vol, "ct", "axial2d", 16, min_foreground=0.5, foreground=fg)
        assert len(tiles) > 0
        png = save_body_png(vol, got, tmp_path / f"{name}_tissue.png", "CT")
        assert tiles_png(vol, tiles, tmp_path / f"{name}_tiles.png").exists() and png.exists()


def test_reader_gives_identical_pixels(ct_files):
    ras_vol = load_volume(ct_files["ras"])
    picks = np.arange(0, 300, 37)
    for mode in ("axial2d", "stack25d", "patch3d"):
        ras = tile_volume(ras_vol, "ct", mode, VOLUME_TILE_SIZE, modality="CT")
        ref = TileReader(ras, modality="CT")
        for name in COPIES:
            tiles = tile_volume(load_volume(ct_files[name]), "ct", mode, VOLUME_TILE_SIZE, modality="CT")
            reader = TileReader(tiles, modality="CT")
            for i in picks[picks < len(tiles)]:
                np.testing.assert_array_equal(reader.read(int(i)), ref.read(int(i)))
    with pytest.raises(InvalidDataError, match="tile it again"):  # RAS tiles cannot be read from the SRA file
        TileReader(ras, {"image": ct_files["sra"]}, modality="CT").read(0)


def _manifest(path: Path, images: dict[str, Path]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "patient_id", "site", "modality", "image"])
        writer.writeheader()
        for cid, image in images.items():
            writer.writerow({"case_id": cid, "patient_id": cid, "site": "s", "modality": "CT", "image": str(image)})
    return path


def test_cli_tiles_a_permuted_ct_like_the_original(ct_files, tmp_path, capsys):
    from medwss.cli.main import main

    manifest = _manifest(tmp_path / "m.csv", ct_files)
    assert main(["tile", str(manifest), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "3 done, 0 skipped, 0 failed; 900 tiles" in capsys.readouterr().out
    ras = load_tiles(tmp_path / "out" / "ras.tiles.h5")
    assert ras.grid_shape == (4, 4, 30)
    for name, (_, _, code) in COPIES.items():
        got = load_tiles(tmp_path / "out" / f"{name}.tiles.h5")
        assert len(got) == len(ras) and got.attrs["source_orientation"] == code
        np.testing.assert_array_equal(got.coords, ras.coords)
