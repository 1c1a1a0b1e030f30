"""QuPath round trip: tissue GeoJSON written by `medwss tile`, edited, used again; heatmap detections on the
slide's geometry; a multiplex QPTIFF tiled through fluorescence tissue detection."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medwss.cli import tile
from medwss.embed.tiles import load_tiles
from medwss.io.annotations import polygons_to_mask, read_geojson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from wsi_fakes import fluorescence_image, write_qptiff  # noqa: E402

MPP = 2.0


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tile.register(parser.add_subparsers())
    return parser.parse_args(["tile", *argv])


def _manifest(tmp_path: Path, image: Path, case_id: str) -> Path:
    path = tmp_path / f"{case_id}.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["case_id", "patient_id", "site", "modality", "image"])
        w.writeheader()
        w.writerow({"case_id": case_id, "patient_id": "p", "site": "s", "modality": "WSI", "image": str(image)})
    return path


def _slide(tmp_path: Path) -> Path:
    from medwss.io.tiff_writer import write_pyramid_tiff

    yy, xx = np.mgrid[0:384, 0:512]
    rgb = np.full((384, 512, 3), 245, np.uint8)
    left = (yy - 190) ** 2 + (xx - 140) ** 2 < 110**2
    right = (abs(yy - 190) < 80) & (abs(xx - 400) < 70)
    rgb[left | right] = (190, 90, 160)  # H&E-like pink-purple
    return write_pyramid_tiff(rgb, tmp_path / "slide.tif", mpp=MPP, tile=128, compression="zlib")


def test_tissue_geojson_round_trip_and_heatmap_detections(tmp_path: Path) -> None:
    from medwss.embed.store import FeatureBag
    from medwss.mil.heatmaps import export_tile_detections

    manifest, out = _manifest(tmp_path, _slide(tmp_path), "s1"), tmp_path / "t"
    common = ("--out", str(out), "--quiet", "--mpp", str(MPP), "--tile-size", "16")
    assert tile.run(_parse(str(manifest), *common)) == 0
    tiles = load_tiles(out / "s1.tiles.h5")
    geo = out / "qa" / "s1_tissue.geojson"
    data = json.loads(geo.read_text())
    assert len(data["features"]) == 2
    assert {f["properties"]["objectType"] for f in data["features"]} == {"annotation"}
    assert {f["properties"]["classification"]["name"] for f in data["features"]} == {"Tissue"}
    shapes = read_geojson(geo)  # level-0 pixels: inside the slide, on the tissue
    xy = np.concatenate([np.asarray(s) for s in shapes])
    assert xy.min() >= 0 and xy[:, 0].max() <= 512 and xy[:, 1].max() <= 384
    inside = polygons_to_mask(shapes, (384, 512))
    assert inside[190, 140] and inside[190, 400] and not inside[10, 10]

    # Edit as in QuPath: drop the right piece and cut a hole into the left one, then tile with it.
    left = max(data["features"], key=lambda f: -np.mean([p[0] for p in f["geometry"]["coordinates"][0]]))
    hole = [[110, 160], [170, 160], [170, 220], [110, 220], [110, 160]]
    left["geometry"]["coordinates"].append(hole)
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps({"type": "FeatureCollection", "features": [left]}))
    assert tile.run(_parse(str(manifest), *common, "--tissue-geojson", str(edited), "--overwrite")) == 0
    again = load_tiles(out / "s1.tiles.h5")
    span = again.span
    assert span == pytest.approx(16.0) and 0 < len(again) < len(tiles)
    centres = again.coords + span / 2
    assert (centres[:, 0] < 300).all()  # none on the dropped piece
    x0, y0 = again.coords[:, 0], again.coords[:, 1]
    in_hole = (x0 >= 110) & (x0 + span <= 170) & (y0 >= 160) & (y0 + span <= 220)
    assert not in_hole.any()  # none inside the hole
    was_in_hole = (tiles.coords[:, 0] >= 110) & (tiles.coords[:, 0] + span <= 170)
    assert (was_in_hole & (tiles.coords[:, 1] >= 160) & (tiles.coords[:, 1] + span <= 220)).any()

    # Heatmap detections: one square per tile at its level-0 coords, with its score.
    scores = np.linspace(0, 1, len(again))
    bag = FeatureBag(np.zeros((len(again), 4), np.float32), again.coords, attrs={"span": span})
    det = export_tile_detections(bag, scores, tmp_path / "s1_detections.geojson")
    feats = json.loads(det.read_text())["features"]
    assert len(feats) == len(again) and {f["properties"]["objectType"] for f in feats} == {"detection"}
    for f, (x, y), s in zip(feats, again.coords, scores, strict=True):
        ring = np.asarray(f["geometry"]["coordinates"][0])
        np.testing.assert_allclose(ring.min(0), [x, y]) and np.testing.assert_allclose(
            ring.max(0), [x + span, y + span]
        )
        assert f["properties"]["measurements"]["score"] == pytest.approx(s)


def test_qptiff_is_tiled_on_its_nuclear_channel(tmp_path: Path) -> None:
    image = write_qptiff(tmp_path / "fluo.qptiff", fluorescence_image(), mpp=MPP)
    manifest, out = _manifest(tmp_path, image, "f1"), tmp_path / "t"
    args = ("--out", str(out), "--quiet", "--mpp", str(MPP), "--tile-size", "32", "--channel", "DAPI", "--channel", "2")
    assert tile.run(_parse(str(manifest), *args)) == 0
    tiles = load_tiles(out / "f1.tiles.h5")
    assert len(tiles) > 10 and tiles.attrs["slide_channels"] == "DAPI,Cy5"
    assert tiles.attrs["tissue_fraction_slide"] == pytest.approx(np.pi * 0.35 * 0.25, abs=0.03)  # the tissue disc

    from medwss.embed.reader import TileReader

    x = TileReader(tiles).read(0)  # DAPI and Cy5 as the first two planes, the third empty
    assert x.shape == (3, 32, 32) and x[0].max() > 0.5 and float(x[2].max()) == 0.0
