"""Polygon annotations: GeoJSON and CAMELYON16 XML round trips, mask ↔ polygon conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medwss.errors import CorruptFileError, FileNotFound
from medwss.io.annotations import (
    mask_to_polygons,
    polygon_area,
    polygons_to_mask,
    read_camelyon_xml,
    read_geojson,
    write_camelyon_xml,
    write_geojson,
)


def _polygons() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    square = np.array([[10.0, 20.0], [110.0, 20.0], [110.0, 120.0], [10.0, 120.0]])
    angles = np.sort(rng.uniform(0, 2 * np.pi, 25))
    radius = rng.uniform(30, 60, 25)
    star = np.column_stack([500 + radius * np.cos(angles), 300.123456789 + radius * np.sin(angles)])
    return [square, star]


def _blobs() -> np.ndarray:
    yy, xx = np.mgrid[0:80, 0:100]
    disk = (yy - 30) ** 2 + (xx - 25) ** 2 < 15**2
    ellipse = ((yy - 55) / 12.0) ** 2 + ((xx - 70) / 22.0) ** 2 < 1
    return disk | ellipse


def test_xml_round_trip_is_exact(tmp_path: Path) -> None:
    polys = _polygons()
    path = write_camelyon_xml(polys, tmp_path / "slide.xml")
    back = read_camelyon_xml(path)
    assert len(back) == len(polys)
    for a, b in zip(polys, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_xml_has_asap_structure(tmp_path: Path) -> None:
    path = write_camelyon_xml(_polygons()[:1], tmp_path / "slide.xml")
    text = path.read_text()
    assert text.startswith("<?xml")
    assert "<ASAP_Annotations>" in text and "<Annotations>" in text
    assert 'Type="Polygon"' in text and 'PartOfGroup="Tumor"' in text
    assert '<Coordinate Order="0" X="10.0" Y="20.0"' in text


def test_read_camelyon_xml_sorts_orders_and_skips_exclusions(tmp_path: Path) -> None:
    xml = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="_0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="2" X="30" Y="40" />
        <Coordinate Order="0" X="10,5" Y="20" />
        <Coordinate Order="1" X="30" Y="20" />
      </Coordinates>
    </Annotation>
    <Annotation Name="_1" Type="Polygon" PartOfGroup="_2" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="1" Y="1" />
        <Coordinate Order="1" X="2" Y="1" />
        <Coordinate Order="2" X="2" Y="2" />
      </Coordinates>
    </Annotation>
    <Annotation Name="dot" Type="Dot" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates><Coordinate Order="0" X="5" Y="5" /></Coordinates>
    </Annotation>
  </Annotations>
</ASAP_Annotations>
"""
    path = tmp_path / "c16.xml"
    path.write_text(xml)
    polys = read_camelyon_xml(path)
    assert len(polys) == 1
    np.testing.assert_array_equal(polys[0], [[10.5, 20], [30, 20], [30, 40]])
    assert len(read_camelyon_xml(path, groups=["_2"])) == 1
    assert read_camelyon_xml(path, groups=["Tumor"]) == []


def test_geojson_round_trip_and_qupath_fields(tmp_path: Path) -> None:
    polys = _polygons()
    path = write_geojson(polys, tmp_path / "slide.geojson")
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    feature = data["features"][0]
    assert feature["properties"]["classification"]["name"] == "Tumor"
    assert feature["properties"]["objectType"] == "annotation"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]  # GeoJSON rings are closed
    back = read_geojson(path)
    for a, b in zip(polys, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert read_geojson(path, classification="Stroma") == []


def test_read_geojson_variants(tmp_path: Path) -> None:
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[2, 2], [4, 2], [4, 4], [2, 2]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square, hole]}, "properties": {}},
        {
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": [[square], [square]]},
            "properties": {"classification": {"name": "Tumor"}},
        },
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}},
    ]
    path = tmp_path / "old_qupath.json"
    path.write_text(json.dumps(features))  # older QuPath exports a bare list of features
    polys = read_geojson(path)
    assert len(polys) == 3  # the polygon (with its hole) and both parts; the point dropped
    outer, inner = polys[0]  # a polygon with a hole reads as its rings
    assert outer.shape == (4, 2) and inner.shape == (3, 2)
    assert all(p.shape == (4, 2) for p in polys[1:])
    assert len(read_geojson(path, classification="Tumor")) == 2


def test_mask_to_polygons_round_trip() -> None:
    mask = _blobs()
    polys = mask_to_polygons(mask)
    assert len(polys) == 2
    np.testing.assert_array_equal(polygons_to_mask(polys, mask.shape), mask)
    # In level-0 coordinates of a downsampled mask, areas scale with the square of the downsample.
    polys16 = mask_to_polygons(mask, downsample=16)
    np.testing.assert_array_equal(polygons_to_mask(polys16, mask.shape, downsample=16), mask)
    assert polygon_area(polys16[0]) == pytest.approx(polygon_area(polys[0]) * 256)
    area = sum(polygon_area(p) for p in polys)
    assert area == pytest.approx(mask.sum(), rel=0.05)


def test_mask_to_polygons_pixel_convention() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[4, 6] = True  # one pixel: level-0 square [6, 7) x [4, 5), centre (6.5, 4.5)
    (poly,) = mask_to_polygons(mask)
    np.testing.assert_allclose(poly.mean(axis=0), [6.5, 4.5])
    (poly4,) = mask_to_polygons(mask, downsample=4)
    np.testing.assert_allclose(poly4.mean(axis=0), [26.0, 18.0])  # centre of [24, 28) x [16, 20)


def test_mask_to_polygons_fills_holes_and_filters() -> None:
    mask = _blobs()
    holed = mask.copy()
    holed[28:33, 23:28] = False
    polys = mask_to_polygons(holed)
    assert len(polys) == 2
    np.testing.assert_array_equal(polygons_to_mask(polys, mask.shape), ndimage.binary_fill_holes(holed))
    assert len(mask_to_polygons(mask, min_area=800)) == 1
    assert mask_to_polygons(np.zeros((5, 5), dtype=bool)) == []


def test_empty_annotations_round_trip(tmp_path: Path) -> None:
    assert read_geojson(write_geojson([], tmp_path / "e.geojson")) == []
    assert read_camelyon_xml(write_camelyon_xml([], tmp_path / "e.xml")) == []


def test_bad_files_raise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<ASAP_Annotations><Annotations>")
    with pytest.raises(CorruptFileError):
        read_camelyon_xml(bad)
    bad_json = tmp_path / "bad.geojson"
    bad_json.write_text("{not json")
    with pytest.raises(CorruptFileError):
        read_geojson(bad_json)
    with pytest.raises(FileNotFound):
        read_geojson(tmp_path / "missing.geojson")
