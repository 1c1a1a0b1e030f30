"""Hostile tile files, bags and tiling settings are refused before allocating, in one line naming the
file; NaN volumes fail their case unless filled; resume never keeps bags of another network or of
older tiles."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medwss.embed.store import FeatureBag, load_bag, save_bag
from medwss.embed.tiles import TileSet, load_tiles, save_tiles
from medwss.embed.tiling import tile_slide, tile_volume
from medwss.errors import CorruptFileError, InvalidDataError
from medwss.io.limits import LimitExceededError
from medwss.io.volume import Volume
from medwss.io.volumes import save_nifti
from medwss.jobs import read_failures
from medwss.mil.grid import check_grid, scatter_to_grid
from tests.embed.test_tiling import ellipse_mask, fake_slide, tissue_for

torch.set_num_threads(1)


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


# --- tiling settings ----------------------------------------------------------------------------


def test_72dpi_slide_mpp_refused_unless_forced():
    slide = fake_slide((300, 250), mpp=352.8, downsamples=(1.0,))
    tissue = tissue_for(slide, np.ones((25, 30), bool))
    with pytest.raises(LimitExceededError) as err:
        tile_slide(slide, "c", tissue=tissue)
    one_line(err, "fake.svs", "352.8 µm/px", "--mpp-override", "--force-mpp")
    forced = tile_slide(slide, "c", tissue=tissue, force_mpp=True)  # the 86,865 tiles, if asked for
    assert len(forced) > 80_000


def test_target_mpp_and_upsampling_refused():
    slide = fake_slide((2000, 2000), mpp=0.25)
    tissue = tissue_for(slide, ellipse_mask(100, 100))
    with pytest.raises(LimitExceededError) as err:
        tile_slide(slide, "c", mpp=0.001, tissue=tissue)
    one_line(err, "fake.svs", "target --mpp 0.001")
    t0 = time.perf_counter()
    with pytest.raises(LimitExceededError) as err:  # forced: the tile-count cap still holds, before allocating
        tile_slide(slide, "c", mpp=0.001, tissue=tissue, force_mpp=True)
    assert time.perf_counter() - t0 < 1.0
    one_line(err, "fake.svs", "tile grid", "MEDWSS_MAX_TILES")
    with pytest.raises(LimitExceededError) as err:
        tile_slide(fake_slide((2000, 2000), mpp=2.0), "c", mpp=0.1, tissue=tissue)
    one_line(err, "20x finer than the slide")


def test_tile_size_and_count_caps(monkeypatch):
    slide = fake_slide((20_000, 16_000), mpp=0.25)
    tissue = tissue_for(slide, ellipse_mask(400, 500))
    with pytest.raises(LimitExceededError) as err:
        tile_slide(slide, "c", tile_size=60_000, mpp=0.25, tissue=tissue)
    one_line(err, "tile_size 60000x60000", "MEDWSS_MAX_TILE_VOXELS")
    monkeypatch.setenv("MEDWSS_MAX_TILES", "100")
    with pytest.raises(LimitExceededError, match="over the limit of 100"):
        tile_slide(slide, "c", tissue=tissue)
    vol = Volume(np.ones((64, 64, 8), np.float32), np.eye(4), {"modality": "MR"}, "v.nii.gz")
    with pytest.raises(LimitExceededError) as err:
        tile_volume(vol, "v", tile_size=1, foreground=np.ones((64, 64, 8), bool))
    one_line(err, "v.nii.gz", "patch grid 64x64x8")


# --- tile files ---------------------------------------------------------------------------------


def _tiles(tmp_path: Path) -> Path:
    coords, grid = np.array([[0, 0], [64, 0]]), np.array([[0, 0], [0, 1]])
    ts = TileSet("c", "s.svs", "slide", coords, grid, (1, 2), (64,), np.ones(2), 0.5, 0, 64.0)
    return save_tiles(ts, tmp_path / "c.tiles.h5")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f: f.attrs.__setitem__("tile_size", np.array([60000])), "tile_size 60000x60000"),
        (lambda f: f.attrs.__setitem__("grid_shape", np.array([10**6, 10**6])), "grid_shape 1000000x1000000"),
        (lambda f: f.attrs.__setitem__("grid_shape", np.array([1, 1])), "grid_index outside grid_shape"),
        (lambda f: f.attrs.__setitem__("kind", "bogus"), "kind 'bogus'"),
    ],
)
def test_hostile_tile_file_attrs(tmp_path, edit, expected):
    path = _tiles(tmp_path)
    with h5py.File(path, "a") as f:
        edit(f)
    with pytest.raises((InvalidDataError, CorruptFileError)) as err:
        load_tiles(path)
    one_line(err, "c.tiles.h5", expected)


def test_tile_file_claiming_a_billion_rows_is_not_read(tmp_path):
    path = _tiles(tmp_path)
    with h5py.File(path, "a") as f:
        del f["coords"]
        f.create_dataset("coords", shape=(10**9, 2), dtype=np.int64, chunks=(1024, 2))  # no data written
    assert path.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(LimitExceededError) as err:
        load_tiles(path)
    assert time.perf_counter() - t0 < 1.0
    one_line(err, "c.tiles.h5", "'coords' rows", "MEDWSS_MAX_TILES")


# --- bags and grids -----------------------------------------------------------------------------


def _bag(tmp_path: Path, **attrs) -> Path:
    bag = FeatureBag(np.ones((2, 4), np.float32), np.array([[0, 0], [64, 0]]), None, np.array([[0, 0], [0, 1]]),
                     {"grid_shape": [1, 2], **attrs})  # fmt: skip
    return save_bag(bag, tmp_path / "b.h5", dtype="float32")


def test_bag_huge_features_claim_refused_before_reading(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", shape=(10**8, 10**4), dtype=np.float32, chunks=(64, 64))
    t0 = time.perf_counter()
    with pytest.raises(LimitExceededError) as err:
        load_bag(path)
    assert time.perf_counter() - t0 < 1.0
    one_line(err, "huge.h5", "'features' claims 100000000x10000", "MEDWSS_MAX_BAG_BYTES")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"grid_shape": [10**7, 10**7]}, "grid_shape 10000000x10000000: cells"),
        ({"grid_shape": [1, 1]}, "grid_index outside grid_shape"),
        ({"grid_shape": [0, 2]}, "must be 2 or 3 positive sizes"),
    ],
)
def test_bag_absurd_grid_refused(tmp_path, change, expected):
    path = _bag(tmp_path, **change)
    with pytest.raises(InvalidDataError) as err:
        load_bag(path)
    one_line(err, "b.h5", expected)


def test_bag_nan_features_coords_and_groups_refused(tmp_path):
    path = _bag(tmp_path)
    with h5py.File(path, "a") as f:
        f["features"][0, 0] = np.nan
    with pytest.raises(InvalidDataError) as err:
        load_bag(path)
    one_line(err, "b.h5", "1 of 2 feature rows hold NaN")
    path = _bag(tmp_path)
    with h5py.File(path, "a") as f:
        f["coords"][0, 0] = 10**12
    with pytest.raises(InvalidDataError, match="coordinate is 1,000,000,000,000"):
        load_bag(path)
    path = _bag(tmp_path)
    with h5py.File(path, "a") as f:
        del f["features"]
        f.create_group("features")
    with pytest.raises(CorruptFileError, match="b.h5: 'features' is a Group, not a dataset"):
        load_bag(path)


def test_grid_scatter_refuses_huge_grids():
    idx = torch.tensor([[0, 0], [10**6, 10**6]])
    with pytest.raises(LimitExceededError, match="MEDWSS_MAX_GRID_CELLS"):
        check_grid(idx, None, 2)  # inferred from the indices
    with pytest.raises(LimitExceededError, match="grid_shape 100000x100000"):
        scatter_to_grid(torch.ones(2, 3), torch.tensor([[0, 0], [1, 1]]), (100_000, 100_000))


# --- NaN volumes and resume through the CLI -------------------------------------------------------


def _volume_manifest(tmp_path: Path, name: str = "v", nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    array = rng.normal(0, 1, (32, 32, 3)).astype(np.float32)
    array[6:26, 6:26] += 100
    if nan:
        array[0, 0, 0] = np.nan
    path = save_nifti(Volume(array, np.eye(4)), tmp_path / f"{name}.nii.gz")
    m = tmp_path / f"{name}.csv"
    m.write_text(f"case_id,patient_id,site,modality,image\n{name},p1,s,MR,{path}\n")
    return m


def test_nan_volume_fails_its_case_unless_filled(tmp_path, capsys):
    from medwss.cli.main import main

    m = _volume_manifest(tmp_path, nan=True)
    tiles = tmp_path / "tiles"
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet"]) == 2
    (row,) = read_failures(tiles / "failures.csv")
    assert "1 NaN or infinite voxels" in row["message"] and "v.nii.gz" in row["message"]
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet", "--nan", "fill"]) == 0
    bags = tmp_path / "bags"
    args = ["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "stats", "--quiet"]
    assert main(args) == 2  # the reader refuses the NaN voxels too
    assert "NaN or infinite voxels" in read_failures(bags / "failures.csv")[0]["message"]
    assert main([*args, "--nan", "fill"]) == 0
    assert np.isfinite(load_bag(bags / "v.h5").features).all()
    capsys.readouterr()


def test_resume_keeps_only_bags_of_the_same_network_and_tiles(tmp_path, capsys):
    from medwss.cli.main import main

    m = _volume_manifest(tmp_path)
    tiles, bags = tmp_path / "tiles", tmp_path / "bags"
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet"]) == 0
    base = ["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "resnet18", "--quiet",
            "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    assert main(base) == 0
    first = load_bag(bags / "v.h5")
    assert first.attrs["encoder_init"] == "random init seed 0" and len(first.attrs["tiles_sha256"]) == 64
    # seeded: a second folder gets the same network, hence the same features
    assert main([*base[:5], str(tmp_path / "bags2"), *base[6:]]) == 0
    np.testing.assert_array_equal(load_bag(tmp_path / "bags2" / "v.h5").features, first.features)
    capsys.readouterr()
    assert main(base) == 0
    assert "skipped 1 finished" in capsys.readouterr().out
    # another seed: the old bag is not kept
    assert main([*base, "--seed", "1"]) == 0
    out = capsys.readouterr()
    assert "encoder_init 'random init seed 0' (now 'random init seed 1')" in out.err and "redid 1 stale" in out.out
    second = load_bag(bags / "v.h5")
    assert second.attrs["encoder_init"] == "random init seed 1"
    assert not np.allclose(second.features, first.features)
    # tiles redone with another tile size: the bag made from the old tiles is redone too
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "8", "--quiet", "--overwrite"]) == 0
    assert main([*base, "--seed", "1"]) == 0
    assert "tiles_sha256" in capsys.readouterr().err
    third = load_bag(bags / "v.h5")
    assert third.attrs["tile_size"] == [8, 8, 1] and len(third) > len(second)


def test_tile_resume_redoes_cases_made_with_other_settings(tmp_path, capsys):
    from medwss.cli.main import main

    m = _volume_manifest(tmp_path)
    tiles = tmp_path / "tiles"
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet"]) == 0
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "8", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "other settings or inputs" in out.err and "1 done (1 redone" in out.out
    assert load_tiles(tiles / "v.tiles.h5").tile_size == (8, 8, 1)


def test_job_wide_errors_fail_fast(tmp_path, capsys):
    from medwss.cli.main import main

    m = _volume_manifest(tmp_path)
    tiles = tmp_path / "tiles"
    assert main(["tile", str(m), "--out", str(tiles), "--tile-size", "16", "--quiet"]) == 0
    assert capsys.readouterr().err == "medwss tile: 1 done, 0 failed\n"  # the summary line of every batch run
    bags = tmp_path / "bags"
    assert main(["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown encoder 'nope'" in err  # once, not once per case
    assert not (bags / "failures.csv").exists() or not read_failures(bags / "failures.csv")
    args = ["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--weights", str(tmp_path / "none.pt")]
    assert main([*args, "--quiet"]) == 2
    assert "none.pt: no such file" in capsys.readouterr().err


def test_stale_temp_files_removed(tmp_path):
    import os

    from medwss.io.atomic import remove_stale_temps

    old, fresh = tmp_path / ".a.h5.xyz.tmp.h5", tmp_path / ".b.h5.xyz.tmp.h5"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temps(tmp_path) == [old]
    assert fresh.exists() and not old.exists()


def _row_coords(n: int) -> np.ndarray:
    return np.stack([np.arange(n) * 64, np.zeros(n)], axis=1).astype(np.int64)


def test_mil_train_resume_refuses_other_features_or_lr(tmp_path, capsys):
    """`mil train` into a folder holding a run on other bags (or another lr) raises instead of resuming."""
    from medwss.cli.main import main

    rng = np.random.default_rng(0)
    rows = ["case_id,patient_id,label,features"]
    for i in range(6):
        feats = rng.normal(i % 2, 1, (5, 8)).astype(np.float32)
        path = save_bag(FeatureBag(feats, _row_coords(5)), tmp_path / f"c{i}.h5", dtype="float32")
        rows.append(f"c{i},p{i},{i % 2},{path}")
    m = tmp_path / "m.csv"
    m.write_text("\n".join(rows) + "\n")
    run = ["mil", "train", str(m), "--out", str(tmp_path / "run"), "--aggregator", "mean", "--epochs", "1",
           "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(run) == 0
    capsys.readouterr()
    assert main([*run, "--lr", "0.5"]) == 2
    assert "lr" in capsys.readouterr().err
    time.sleep(0.01)
    save_bag(FeatureBag(rng.normal(0, 1, (7, 8)).astype(np.float32), _row_coords(7)), tmp_path / "c0.h5")
    assert main(run) == 2
    assert "train_data" in capsys.readouterr().err
