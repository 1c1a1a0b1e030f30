"""`medwss tile`: per-case outputs, failures recorded and skipped, resume, configs."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from medwss.cli import tile
from medwss.config import load_config
from medwss.embed.tiles import load_tiles
from medwss.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tile.register(parser.add_subparsers())
    return parser.parse_args(["tile", *argv])


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def slide_manifest(tmp_path: Path, real: Path) -> Path:
    rows = [
        {"case_id": "bad", "patient_id": "p1", "site": "s", "modality": "WSI", "image": str(real / "wsi" / "unreadable.svs")},
        {"case_id": "cmu", "patient_id": "p2", "site": "s", "modality": "WSI", "image": str(real / "wsi" / "cmu-1-small-region.svs")},
    ]  # fmt: skip
    return write_manifest(tmp_path / "manifest.csv", rows)


def test_tile_records_failure_goes_on_and_resumes(real, tmp_path, capsys):
    manifest = slide_manifest(tmp_path, real)
    out = tmp_path / "tiles"
    assert tile.run(parse(str(manifest), "--out", str(out), "--quiet")) == 3  # 1 of 2 cases failed
    cap = capsys.readouterr()
    assert "1 done, 0 skipped, 1 failed" in cap.out
    assert cap.err.splitlines()[-1] == f"medwss tile: 1 done, 1 failed; see {out / 'failures.csv'}"
    tiles = load_tiles(out / "cmu.tiles.h5")
    assert tiles.kind == "slide" and len(tiles) > 20 and (tiles.tissue_fraction >= 0.25).all()
    assert tiles.source.endswith("cmu-1-small-region.svs") and tiles.attrs["modality"] == "WSI"
    assert (out / "qa" / "cmu_tissue.png").exists() and (out / "qa" / "cmu_tiles.png").exists()
    assert not (out / "bad.tiles.h5").exists()
    rows = list(csv.DictReader(io.StringIO((out / "failures.csv").read_text())))
    assert [r["case_id"] for r in rows] == ["bad"]
    assert rows[0]["image"].endswith("unreadable.svs")
    assert rows[0]["error_class"] == "CorruptFileError" and rows[0]["stage"] == "tile"
    assert "\n" not in rows[0]["message"] and list(rows[0]) == ["case_id", "stage", "error_class", "message", "image"]
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "tile" and record["metrics"]["done"] == 1 and record["metrics"]["failed"] == 1
    assert record["config"]["mpp"] == 0.5 and record["config"]["tissue"]["saturation"] == "otsu"

    # A second run skips the finished case and tries the failed one again.
    stamp = (out / "cmu.tiles.h5").stat().st_mtime_ns
    assert tile.run(parse(str(manifest), "--out", str(out), "--quiet")) == 3
    cap = capsys.readouterr()
    assert "0 done, 1 skipped, 1 failed" in cap.out
    summary = f"medwss tile: 0 done, 1 skipped (already done), 1 failed; see {out / 'failures.csv'}"
    assert cap.err.splitlines()[-1] == summary
    assert (out / "cmu.tiles.h5").stat().st_mtime_ns == stamp
    assert (
        len(list(csv.DictReader(io.StringIO((out / "failures.csv").read_text())))) == 1
    )  # replaced, not appended twice

    # --overwrite redoes it, with the flags given.
    assert tile.run(parse(str(manifest), "--out", str(out), "--quiet", "--overwrite", "--overlap", "0.5")) == 3
    again = load_tiles(out / "cmu.tiles.h5")
    assert again.attrs["overlap"] == 0.5 and len(again) > 2 * len(tiles)
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_tile_all_failed_exits_2(real, tmp_path, capsys):
    rows = [
        {
            "case_id": "bad",
            "patient_id": "p",
            "site": "s",
            "modality": "WSI",
            "image": str(real / "wsi" / "unreadable.svs"),
        }
    ]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    assert tile.run(parse(str(manifest), "--out", str(tmp_path / "o"), "--quiet")) == 2
    assert "0 done, 0 skipped, 1 failed" in capsys.readouterr().out


def test_tile_volumes_and_multichannel(real, tmp_path, rng):
    from medwss.io.volume import Volume
    from medwss.io.volumes import save_nifti

    shape = (32, 32, 6)
    body = np.zeros(shape, np.float32)
    body[4:28, 6:26] = 500
    t2 = save_nifti(Volume(body + rng.normal(0, 5, shape).astype(np.float32), np.eye(4)), tmp_path / "t2.nii.gz")
    adc = save_nifti(Volume(body * 2, np.eye(4)), tmp_path / "adc.nii.gz")
    mr = [
        {"case_id": "mr", "patient_id": "p", "site": "s", "modality": "MR", "image_t2": str(t2), "image_adc": str(adc)}
    ]
    ct = [
        {
            "case_id": "ct",
            "patient_id": "q",
            "site": "s",
            "modality": "CT",
            "image": str(real / "volumes" / "example_ct_sm.nii.gz"),
        }
    ]
    out = tmp_path / "out"
    assert tile.run(parse(str(write_manifest(tmp_path / "mr.csv", mr)), "--out", str(out), "--quiet", "--mode", "stack25d", "--tile-size", "8")) == 0  # fmt: skip
    tiles = load_tiles(out / "mr.tiles.h5")
    assert tiles.kind == "stack25d" and tiles.tile_size == (8, 8, 3) and tiles.source == str(t2)
    assert tiles.attrs["channels"] == "t2,adc" and tiles.grid_index.shape[1] == 3
    assert (out / "qa" / "mr_tissue.png").exists() and (out / "qa" / "mr_tiles.png").exists()
    assert tile.run(parse(str(write_manifest(tmp_path / "ct.csv", ct)), "--out", str(out), "--quiet", "--mode", "patch3d", "--tile-size", "16")) == 0  # fmt: skip
    ct_tiles = load_tiles(out / "ct.tiles.h5")
    assert ct_tiles.kind == "patch3d" and ct_tiles.tile_size == (16, 16, 16) and ct_tiles.spacing == (3.0, 3.0, 3.0)


def test_config_file_and_flags(tmp_path):
    from tests.conftest import ROOT

    shipped = load_config(ROOT / "configs" / "tile.yaml", tile.TileConfig)
    assert shipped == tile.TileConfig()  # the shipped file states the defaults
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("mpp: 1.0\ntile_size: 256\ntissue:\n  saturation: 0.1\n")
    cfg = tile.resolve(parse("m.csv", "--out", "o", "--config", str(cfg_file), "--mpp", "2.0"))
    assert cfg.mpp == 2.0 and cfg.tile_size == 256 and cfg.tissue.saturation == 0.1
    cfg = tile.resolve(parse("m.csv", "--out", "o", "--config", str(cfg_file), "--tissue-min-area-um2", "5"))
    assert cfg.tissue.min_area_um2 == 5 and cfg.tissue.saturation == 0.1  # a flag of a section keeps its other keys
    with pytest.raises(ConfigError, match="overlap"):
        tile.resolve(parse("m.csv", "--out", "o", "--overlap", "1.5"))
    cfg_file.write_text("tissue:\n  colour: red\n")
    with pytest.raises(ConfigError, match="t.yaml"):
        tile.resolve(parse("m.csv", "--out", "o", "--config", str(cfg_file)))


def test_volume_roi_labels_keep_tiles_near_the_kidneys(tmp_path, real):
    from medwss.cli.main import main
    from medwss.embed.tiles import load_tiles
    from medwss.io import load_volume

    vols = real / "volumes"
    m = tmp_path / "m.csv"
    m.write_text(
        "case_id,patient_id,site,modality,image,mask\n"
        f"ct,p,s,CT,{vols / 'example_ct_sm.nii.gz'},{vols / 'example_seg.nii.gz'}\n"
    )
    common = ["tile", str(m), "--tile-size", "8", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    assert main([*common, "--out", str(tmp_path / "roi"), "--roi-labels", "2,3", "--roi-margin-mm", "0"]) == 0
    every, roi = load_tiles(tmp_path / "all" / "ct.tiles.h5"), load_tiles(tmp_path / "roi" / "ct.tiles.h5")
    assert 0 < len(roi) < len(every)
    seg = load_volume(vols / "example_seg.nii.gz").array
    kidney_k = np.flatnonzero(np.isin(seg, [2, 3]).any(axis=(0, 1)))
    assert set(roi.coords[:, 2]) <= set(kidney_k.tolist())  # only slices that hold kidney
