"""Feature bags: round trips, bags written by other tools (CLAM, TRIDENT), resume checks, bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medwss.embed.store import FeatureBag, bag_is_done, load_bag, save_bag
from medwss.embed.tiles import TileSet, load_tiles, save_tiles
from medwss.errors import CorruptFileError, InvalidDataError


def _bag(rng, n=10, c=8, tokens=False) -> FeatureBag:
    return FeatureBag(
        rng.standard_normal((n, c)).astype(np.float32),
        rng.integers(0, 5000, (n, 2)),
        rng.standard_normal((n, c, 2, 2)).astype(np.float32) if tokens else None,
        rng.integers(0, 10, (n, 2)),
        {"encoder": "resnet18", "tile_size": [224], "mpp": 0.5, "grid_shape": [10, 12]},
    )


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip(tmp_path, rng, dtype):
    bag = _bag(rng, tokens=True)
    save_bag(bag, tmp_path / "a.h5", dtype=dtype)
    back = load_bag(tmp_path / "a.h5", tokens=True)
    tol = 1e-2 if dtype == "float16" else 0
    np.testing.assert_allclose(back.features, bag.features, atol=tol)
    np.testing.assert_array_equal(back.coords, bag.coords)
    np.testing.assert_allclose(back.tokens, bag.tokens, atol=tol)
    np.testing.assert_array_equal(back.grid_index, bag.grid_index)
    assert back.features.dtype == np.dtype(dtype)
    assert back.attrs["encoder"] == "resnet18" and back.attrs["medwss_version"]
    assert back.grid_shape == (10, 12) and back.attrs["mpp"] == 0.5
    assert load_bag(tmp_path / "a.h5").tokens is None  # tokens only on request


def test_clam_and_trident_bags_load_as_they_are(tmp_path, rng):
    feats, coords = rng.standard_normal((7, 1024)).astype(np.float32), rng.integers(0, 9000, (7, 2))
    with h5py.File(tmp_path / "clam.h5", "w") as f:  # CLAM: datasets only, attributes on coords
        f.create_dataset("features", data=feats)
        d = f.create_dataset("coords", data=coords)
        d.attrs["patch_size"] = 256
        d.attrs["patch_level"] = 0
    with h5py.File(tmp_path / "trident.h5", "w") as f:  # TRIDENT: (1, N, C) is also seen in the wild
        f.create_dataset("features", data=feats[None])
        f.create_dataset("coords", data=coords[None])
    for name in ("clam.h5", "trident.h5"):
        bag = load_bag(tmp_path / name)
        np.testing.assert_array_equal(bag.features, feats)
        np.testing.assert_array_equal(bag.coords, coords)
    assert load_bag(tmp_path / "clam.h5").attrs["patch_size"] == 256


def test_clam_pt_features(tmp_path, rng):
    import torch

    torch.save(torch.randn(5, 16), tmp_path / "c.pt")
    bag = load_bag(tmp_path / "c.pt")
    assert bag.features.shape == (5, 16) and bag.coords is None


def test_bad_bags(tmp_path, rng):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CorruptFileError, match="junk.h5"):
        load_bag(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "nofeat.h5", "w") as f:
        f.create_dataset("coords", data=np.zeros((2, 2)))
    with pytest.raises(CorruptFileError, match="no 'features'"):
        load_bag(tmp_path / "nofeat.h5")
    bag = _bag(rng)
    bag.coords = bag.coords[:3]
    with pytest.raises(InvalidDataError, match="10 features but 3 coords"):
        save_bag(bag, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_bag_is_done(tmp_path, rng):
    assert not bag_is_done(tmp_path / "a.h5")
    save_bag(_bag(rng), tmp_path / "a.h5")
    assert bag_is_done(tmp_path / "a.h5") and bag_is_done(tmp_path / "a.h5", encoder="resnet18")
    assert not bag_is_done(tmp_path / "a.h5", encoder="vit")


def test_tiles_round_trip(tmp_path, rng):
    t = TileSet("c1", "/x/s.svs", "slide", rng.integers(0, 100, (5, 2)), rng.integers(0, 3, (5, 2)), (3, 3), (224,),
                rng.random(5), mpp=0.5, level=1, span=448.0, attrs={"overlap": 0.0})  # fmt: skip
    save_tiles(t, tmp_path / "c1.tiles.h5")
    back = load_tiles(tmp_path / "c1.tiles.h5")
    np.testing.assert_array_equal(back.coords, t.coords)
    assert (back.case_id, back.kind, back.mpp, back.level, back.span) == ("c1", "slide", 0.5, 1, 448.0)
    assert back.grid_shape == (3, 3) and back.tile_size == (224,) and back.attrs == {"overlap": 0.0}
    v = TileSet("v", "/x/v.nii.gz", "patch3d", np.zeros((2, 3)), np.zeros((2, 3)), (1, 1, 2), (8, 8, 8), [1, 1],
                spacing=(1.0, 1.0, 2.5))  # fmt: skip
    save_tiles(v, tmp_path / "v.tiles.h5")
    assert load_tiles(tmp_path / "v.tiles.h5").spacing == (1.0, 1.0, 2.5)
