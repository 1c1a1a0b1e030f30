"""CLAM/TRIDENT in and out: their attributes on medwss bags, their coordinate files as tiles, ``--mag``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from medwss.cli.main import main
from medwss.cli.tile import magnification_mpp
from medwss.embed.store import FeatureBag, load_bag, save_bag, slide_coords_attrs
from medwss.embed.tiles import find_tiles, load_tiles, tiles_from_coords
from medwss.errors import CorruptFileError, MissingMetadataError


def _slide(tmp_path: Path, side: int = 256) -> Path:
    """A plain RGB TIFF without resolution metadata (so no mpp, no objective power)."""
    import tifffile

    rgb = np.full((side, side, 3), 240, np.uint8)
    rgb[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = (150, 60, 140)
    path = tmp_path / "synthetic.tiff"
    tifffile.imwrite(path, rgb, photometric="rgb")
    return path


def _coords_file(path: Path, coords, **attrs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("coords", data=np.asarray(coords, np.int64))
        for k, v in attrs.items():
            d.attrs[k] = v
    return path


def test_slide_bags_carry_clam_and_trident_attributes_on_coords(tmp_path):
    attrs = {"kind": "slide", "case_id": "c1", "tile_size": [224], "span": 448.0, "level": 1, "mpp": 0.5,
             "encoder": "stats"}  # fmt: skip
    extra = slide_coords_attrs(attrs, 4.0, (500, 400), objective_power=40, slide_mpp=0.25, overlap=0.25)
    bag = FeatureBag(np.ones((3, 4), np.float32), np.array([[0, 0], [448, 0], [0, 448]]), attrs=attrs)
    bag.coords_attrs.update(extra)
    path = save_bag(bag, tmp_path / "c1.h5")
    with h5py.File(path) as f:
        c = dict(f["coords"].attrs)
        root = dict(f.attrs)
    assert c["patch_size"] == 112 and c["patch_level"] == 1 and list(c["downsample"]) == [4.0, 4.0]  # CLAM
    assert list(c["level_dim"]) == [500, 400] and list(c["downsampled_level_dim"]) == [500, 400]
    assert c["patch_size"] * c["downsample"][0] == c["patch_size_level0"] == 448  # TRIDENT
    assert c["level0_magnification"] == 40 and c["target_magnification"] == 20 and c["overlap"] == 56
    assert c["name"] == "c1"
    assert root["tile_size"].tolist() == [224] and root["span"] == 448 and root["mpp"] == 0.5  # medwss's, kept
    back = load_bag(path)
    assert back.attrs["mpp"] == 0.5 and back.attrs["patch_size_level0"] == 448
    # without the slide's level facts: level 0, which reads the same region
    plain = slide_coords_attrs(attrs)
    assert plain["patch_level"] == 0 and plain["patch_size"] == 448 and plain["target_magnification"] == 20
    assert slide_coords_attrs({"kind": "patch3d", "span": 1.0, "tile_size": [8, 8, 8]}) == {}


def test_clam_coordinates_become_tiles(tmp_path):
    slide = _slide(tmp_path)
    coords = [[0, 0], [64, 0], [128, 64], [192, 192]]
    path = _coords_file(tmp_path / "clam" / "patches" / "synthetic.h5", coords, patch_size=64, patch_level=0,
                        downsample=[1.0, 1.0], name="synthetic")  # fmt: skip
    assert find_tiles(tmp_path / "clam", "case7", slide) == path  # found by the slide's file stem
    assert find_tiles(tmp_path / "clam", "case7") is None
    t = tiles_from_coords(path, slide, "case7", mpp_override=0.5)
    assert t.case_id == "case7" and t.kind == "slide" and t.tile_size == (64,) and t.span == 64 and t.mpp == 0.5
    np.testing.assert_array_equal(t.coords, coords)
    np.testing.assert_array_equal(t.grid_index, [[0, 0], [0, 1], [1, 2], [3, 3]])  # (row, col)
    assert t.grid_shape == (4, 4) and t.attrs["source_format"] == "clam"
    with pytest.raises(MissingMetadataError, match="--mpp-override"):
        tiles_from_coords(path, slide)  # the synthetic slide has no mpp and the file no magnification
    bad = _coords_file(tmp_path / "bad.h5", coords)
    with pytest.raises(CorruptFileError, match="no patch_size"):
        tiles_from_coords(bad, slide, mpp_override=0.5)


def test_trident_coordinates_file_as_embed_tiles(tmp_path, real):
    wsi = real / "wsi" / "cmu-1-small-region.svs"
    m = tmp_path / "m.csv"
    m.write_text(f"case_id,patient_id,site,modality,image\ncmu,p1,s,WSI,{wsi}\n")
    coords = [[600, 800], [728, 800], [600, 928], [1400, 1600]]
    trident = _coords_file(tmp_path / "trident" / "patches" / "cmu-1-small-region_patches.h5", coords,
                           patch_size=32, patch_size_level0=128, level0_magnification=20, target_magnification=5,
                           overlap=0, name="cmu-1-small-region")  # fmt: skip
    bags = tmp_path / "bags"
    for tiles_arg in (tmp_path / "trident", trident):  # a folder, or the one file of a one-case manifest
        args = ["embed", str(m), "--tiles", str(tiles_arg), "--out", str(bags), "--encoder", "stats", "--quiet",
                "--overwrite", "--batch-size", "4", "--workers", "0"]  # fmt: skip
        assert main(args) == 0
        bag = load_bag(bags / "cmu.h5")
        np.testing.assert_array_equal(bag.coords, coords)
        assert len(bag) == 4 and np.isfinite(bag.features).all()
        assert bag.attrs["mpp"] == pytest.approx(0.499 * 4, rel=1e-3) and bag.attrs["tile_size"] == [32]
        assert bag.attrs["patch_size_level0"] == 128 and bag.attrs["level0_magnification"] == 20
        assert bag.attrs["target_magnification"] == pytest.approx(5, rel=1e-3)
    again = tiles_from_coords(bags / "cmu.h5", wsi)  # a medwss bag is a coordinates file too
    assert again.tile_size == (32,) and again.span == 128 and again.mpp == pytest.approx(bag.attrs["mpp"])
    np.testing.assert_array_equal(again.coords, coords)


def test_magnification_to_mpp():
    both = SimpleNamespace(objective_power=40.0, has_mpp=True, mpp=0.2527, path="a.svs")
    assert magnification_mpp(both, 20) == pytest.approx(0.5054)
    mpp_only = SimpleNamespace(objective_power=None, has_mpp=True, mpp=0.25, path="b.tiff")
    assert magnification_mpp(mpp_only, 20) == pytest.approx(0.5)
    power_only = SimpleNamespace(objective_power=20.0, has_mpp=False, mpp_override=None, path="c.tiff")
    assert magnification_mpp(power_only, 10) == pytest.approx(1.0) and power_only.mpp_override == 0.5
    neither = SimpleNamespace(objective_power=None, has_mpp=False, path="d.tiff")
    with pytest.raises(MissingMetadataError, match=r"d\.tiff: --mag 20 needs the slide's objective power"):
        magnification_mpp(neither, 20)


def test_tile_with_mag_on_a_real_slide(tmp_path, real, capsys):
    wsi = real / "wsi" / "cmu-1-small-region.svs"
    m = tmp_path / "m.csv"
    m.write_text(f"case_id,patient_id,site,modality,image\ncmu,p1,s,WSI,{wsi}\n")
    out = tmp_path / "tiles"
    assert main(["tile", str(m), "--out", str(out), "--mag", "2.5", "--tile-size", "64", "--quiet"]) == 0
    t = load_tiles(out / "cmu.tiles.h5")
    assert t.mpp == pytest.approx(0.499 * 20 / 2.5, rel=1e-3) and len(t) > 0
    assert t.attrs["target_magnification"] == 2.5 and t.attrs["level0_magnification"] == 20
    assert main(["tile", str(m), "--out", str(out), "--mag", "5", "--mpp", "1", "--quiet"]) != 0
    assert "--mag or --mpp" in capsys.readouterr().err
