"""GeoJSON polygons with holes: traced from masks, written, read back with their holes, rasterised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medwss.io.annotations import mask_to_polygons, polygons_to_mask, read_geojson, rings, write_geojson


def _ring_mask() -> np.ndarray:
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:30, 5:35] = True
    mask[10:20, 12:22] = False  # a hole
    mask[24:27, 26:29] = False  # a second hole
    mask[33:38, 40:47] = True  # a separate piece without holes
    return mask


def test_holes_survive_mask_geojson_mask(tmp_path: Path) -> None:
    mask = _ring_mask()
    shapes = mask_to_polygons(mask, downsample=4.0, holes=True)
    assert len(shapes) == 2 and len(rings(shapes[0])) == 3 and len(rings(shapes[1])) == 1
    path = write_geojson(shapes, tmp_path / "tissue.geojson", classification="Tissue")
    data = json.loads(path.read_text())
    geom = data["features"][0]["geometry"]
    assert data["type"] == "FeatureCollection" and geom["type"] == "Polygon" and len(geom["coordinates"]) == 3
    assert all(ring[0] == ring[-1] for ring in geom["coordinates"])  # GeoJSON rings are closed
    assert data["features"][0]["properties"]["objectType"] == "annotation"
    back = read_geojson(path, classification="Tissue")
    np.testing.assert_array_equal(polygons_to_mask(back, mask.shape, downsample=4.0), mask)
    # without holes the old behaviour: outer rings, holes filled
    filled = polygons_to_mask(mask_to_polygons(mask, downsample=4.0), mask.shape, downsample=4.0)
    assert filled[12, 15] and not polygons_to_mask(back, mask.shape, 4.0)[12, 15]


def test_detections_with_measurements(tmp_path: Path) -> None:
    squares = [np.array([[0, 0], [8, 0], [8, 8], [0, 8]], float), np.array([[8, 0], [16, 0], [16, 8], [8, 8]], float)]
    path = write_geojson(squares, tmp_path / "d.geojson", object_type="detection",
                         measurements=[{"score": 0.25}, {"score": 0.75}])  # fmt: skip
    feats = json.loads(path.read_text())["features"]
    assert [f["properties"]["objectType"] for f in feats] == ["detection", "detection"]
    assert [f["properties"]["measurements"]["score"] for f in feats] == [0.25, 0.75]
