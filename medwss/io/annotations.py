"""Polygon annotations of slides: QuPath GeoJSON and CAMELYON16-style ASAP XML, and mask conversions.

Coordinates are level-0 pixels, continuous: pixel ``(row, col)`` covers ``[col, col + 1) × [row, row + 1)``,
so its centre is ``(col + 0.5, row + 0.5)``. A polygon is an ``(N, 2)`` float array of ``(x, y)``
vertices, not repeating the first vertex at the end (GeoJSON rings are closed on writing and
opened on reading). A polygon with holes is a list of rings ``[outer, hole, ...]``; every function
taking polygons accepts both forms, and `read_geojson` gives a polygon with holes in the second.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Union, overload

import numpy as np
from scipy import ndimage

from medwss.errors import CorruptFileError, require_file
from medwss.io.atomic import dumps_json, write_text

DEFAULT_CLASS = "Tumor"
CLASS_COLORS = {"Tumor": (200, 0, 0)}
EXCLUSION_GROUPS = ("_2", "Exclusion")
Shape = Union[np.ndarray, Sequence[np.ndarray]]  # noqa: UP007
"""A polygon: an (N, 2) array, or a list of rings ``[outer, hole, ...]``."""
"""CAMELYON16 groups that mark regions to exclude from tumour annotations."""


def _as_polygon(poly: np.ndarray) -> np.ndarray:
    p = np.asarray(poly, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"a polygon is an (N, 2) array of (x, y), got shape {p.shape}")
    if len(p) > 1 and np.array_equal(p[0], p[-1]):
        p = p[:-1]
    return p


def _drop_collinear(p: np.ndarray) -> np.ndarray:
    """Remove vertices lying on the straight segment between their neighbours."""
    if len(p) < 4:
        return p
    prev, nxt = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
    cross = (p[:, 0] - prev[:, 0]) * (nxt[:, 1] - p[:, 1]) - (p[:, 1] - prev[:, 1]) * (nxt[:, 0] - p[:, 0])
    keep = np.abs(cross) > 1e-9
    return p[keep] if keep.sum() >= 3 else p


def rings(shape: Shape) -> list[np.ndarray]:
    """The rings of a polygon, outer first: ``[outer]`` for an (N, 2) array, ``[outer, hole, ...]`` otherwise."""
    if isinstance(shape, np.ndarray) and shape.ndim == 2:
        return [_as_polygon(shape)]
    return [_as_polygon(r) for r in shape]


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned area of a simple polygon (shoelace formula), in squared coordinate units."""
    p = _as_polygon(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _ring_of(region: np.ndarray, box: tuple[slice, slice], downsample: float) -> np.ndarray | None:
    """The 0.5 iso-line around a filled region (cut out of the mask at `box`), in level-0 pixels."""
    import contourpy

    padded = np.pad(region, 1).astype(np.float64)
    lines = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate).lines(0.5)
    # One closed line per filled region; keep the largest if a saddle point split it.
    best = max((_as_polygon(np.asarray(line)) for line in lines if len(line) >= 4), key=polygon_area, default=None)
    if best is None:
        return None
    best = _drop_collinear(best)
    offset = np.array([box[1].start - 1, box[0].start - 1], dtype=np.float64)
    return (best + offset + 0.5) * float(downsample)


@overload
def mask_to_polygons(
    mask: np.ndarray, downsample: float = ..., min_area: float = ..., holes: Literal[False] = ...
) -> list[np.ndarray]: ...
@overload
def mask_to_polygons(
    mask: np.ndarray, downsample: float = ..., min_area: float = ..., *, holes: bool
) -> list[Shape]: ...
def mask_to_polygons(
    mask: np.ndarray, downsample: float = 1.0, min_area: float = 0.0, holes: bool = False
) -> list[Shape] | list[np.ndarray]:
    """Outer boundaries of the connected regions of a binary mask, in level-0 pixel coordinates.

    Each 4-connected region gives one polygon: the 0.5 iso-line of the mask, which runs half-way
    between region pixels and background pixels, so rasterising the polygons again with
    `polygons_to_mask` gives back the mask (with its holes filled unless `holes`).

    Args:
        mask: (H, W) boolean or 0/1 array, indexed (row, col).
        downsample: Level-0 pixels per mask pixel; mask pixel ``(r, c)`` is centred on level-0
            point ``((c + 0.5) d, (r + 0.5) d)``.
        min_area: Drop polygons smaller than this area (level-0 pixels², of the outer ring).
        holes: Keep the holes: a region with holes gives rings ``[outer, hole, ...]``.

    Returns:
        Polygons as (N, 2) arrays of (x, y) (or ring lists, with `holes`), largest first.
    """
    binary = np.asarray(mask) > 0
    if binary.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {binary.shape}")
    labels, n = ndimage.label(binary)
    polygons: list[Shape] = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        region = labels[box] == index
        filled = ndimage.binary_fill_holes(region)
        outer = _ring_of(filled, box, downsample)
        if outer is None or polygon_area(outer) < min_area:
            continue
        if not holes or np.array_equal(filled, region):
            polygons.append(outer)
            continue
        hole_labels, _ = ndimage.label(filled & ~region)
        inner = []
        for h_index, h_box in enumerate(ndimage.find_objects(hole_labels), start=1):
            if h_box is None:
                continue
            full_box = (slice(box[0].start + h_box[0].start, box[0].start + h_box[0].stop),
                        slice(box[1].start + h_box[1].start, box[1].start + h_box[1].stop))  # fmt: skip
            ring = _ring_of(ndimage.binary_fill_holes(hole_labels[h_box] == h_index), full_box, downsample)
            if ring is not None:
                inner.append(ring)
        polygons.append([outer, *inner] if inner else outer)
    polygons.sort(key=lambda s: polygon_area(rings(s)[0]), reverse=True)
    return polygons


def polygons_to_mask(polygons: Sequence[Shape], shape: tuple[int, int], downsample: float = 1.0) -> np.ndarray:
    """Rasterise polygons (level-0 coordinates) onto a mask grid: a pixel is set if its centre is inside.

    Args:
        polygons: (N, 2) arrays of (x, y) in level-0 pixels, or ring lists ``[outer, hole, ...]``.
        shape: (H, W) of the output mask.
        downsample: Level-0 pixels per mask pixel.

    Returns:
        (H, W) bool mask, the union of the polygons.
    """
    from matplotlib.path import Path as MplPath

    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=bool)
    d = float(downsample)
    for item in polygons:
        outer, *holes = rings(item)
        p = outer / d - 0.5  # mask index coordinates
        if len(p) < 3:
            continue
        c0, r0 = np.floor(p.min(axis=0)).astype(int)
        c1, r1 = np.ceil(p.max(axis=0)).astype(int)
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, w - 1), min(r1, h - 1)
        if c1 < c0 or r1 < r0:
            continue
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        points = np.column_stack([cc.ravel(), rr.ravel()])
        inside = MplPath(p).contains_points(points)
        for hole in holes:
            if len(hole) >= 3:
                inside &= ~MplPath(hole / d - 0.5).contains_points(points)
        out[r0 : r1 + 1, c0 : c1 + 1] |= inside.reshape(rr.shape)
    return out


def write_geojson(
    polygons: Sequence[Shape],
    path: str | Path,
    classification: str = DEFAULT_CLASS,
    color: tuple[int, int, int] | None = None,
    object_type: str = "annotation",
    measurements: Sequence[dict[str, float]] | None = None,
) -> Path:
    """Write polygons as a QuPath-compatible GeoJSON FeatureCollection of annotations, atomically.

    Args:
        polygons: (N, 2) arrays of (x, y) in level-0 pixels, or ring lists ``[outer, hole, ...]``.
        path: Output ``.geojson``.
        classification: Class name stored in ``properties.classification.name``.
        color: RGB colour of the class; a default for known classes.
        object_type: QuPath's ``objectType``: ``annotation`` (editable regions) or ``detection``.
        measurements: One ``{name: value}`` per polygon, QuPath's ``measurements`` (measurement maps).
    """
    rgb = list(color or CLASS_COLORS.get(classification, (255, 200, 0)))
    if measurements is not None and len(measurements) != len(polygons):
        raise ValueError(f"{path}: {len(measurements)} measurement rows for {len(polygons)} polygons")
    features = []
    for i, poly in enumerate(polygons):
        coords = []
        for p in rings(poly):
            coords.append([[float(x), float(y)] for x, y in p] + [[float(p[0, 0]), float(p[0, 1])]])
        props: dict = {"objectType": object_type, "classification": {"name": classification, "color": rgb}}
        if measurements is not None:
            props["measurements"] = {k: float(v) for k, v in measurements[i].items()}
        features.append(
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coords}, "properties": props}
        )
    # One feature per line: compact, yet readable and diff-friendly.
    body = ",\n".join(dumps_json(f, indent=None) for f in features)
    text = '{"type": "FeatureCollection", "features": [\n' + body + ("\n" if features else "") + "]}\n"
    return write_text(path, text)


def _feature_class(feature: dict) -> str | None:
    props = feature.get("properties") or {}
    cls = props.get("classification")
    if isinstance(cls, dict):
        return cls.get("name")
    if isinstance(cls, str):
        return cls
    return props.get("name") if isinstance(props.get("name"), str) else None


def read_geojson(path: str | Path, classification: str | None = None) -> list[Shape]:
    """Polygons of a GeoJSON file (FeatureCollection, single Feature, or a list of features as
    older QuPath versions export).

    Each Polygon gives its outer ring as an (N, 2) array, or, when it has holes, its rings
    ``[outer, hole, ...]`` (`polygons_to_mask` cuts the holes out); each MultiPolygon gives one
    polygon per part. Other geometries (points, lines) are skipped.

    Args:
        path: A ``.geojson``/``.json`` file.
        classification: Keep only features of this class name; all features if None.

    Returns:
        Polygons of (x, y) floats in the file's coordinates (level-0 pixels for QuPath).
    """
    path = require_file(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"not valid GeoJSON ({exc})", path) from exc
    if isinstance(data, list):
        features = data
    elif data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    elif data.get("type") == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    polygons: list[Shape] = []
    for feature in features:
        if classification is not None and _feature_class(feature) != classification:
            continue
        geom = feature.get("geometry") or {}
        kind = geom.get("type")
        if kind == "Polygon":
            parts = [geom["coordinates"]]
        elif kind == "MultiPolygon":
            parts = geom["coordinates"]
        else:
            continue
        for part in parts:
            if not part or len(part[0]) < 3:
                continue
            loops = [_as_polygon(np.asarray(r, dtype=np.float64)[:, :2]) for r in part if len(r) >= 3]
            polygons.append(loops[0] if len(loops) == 1 else loops)
    return polygons


def write_camelyon_xml(
    polygons: Sequence[np.ndarray],
    path: str | Path,
    group: str = DEFAULT_CLASS,
    color: str = "#F4FA58",
) -> Path:
    """Write polygons as CAMELYON16-style ASAP XML, atomically.

    Args:
        polygons: (N, 2) arrays of (x, y) in level-0 pixels.
        path: Output ``.xml``.
        group: ``PartOfGroup`` of every annotation (CAMELYON16 uses ``Tumor``, ``_0``, ``_1``; ``_2`` excludes).
        color: Annotation colour.
    """
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    for i, poly in enumerate(polygons):
        p = _as_polygon(poly)
        ann = ET.SubElement(
            annotations,
            "Annotation",
            {"Name": f"Annotation {i}", "Type": "Polygon", "PartOfGroup": group, "Color": color},
        )
        coords = ET.SubElement(ann, "Coordinates")
        for order, (x, y) in enumerate(p):
            ET.SubElement(coords, "Coordinate", {"Order": str(order), "X": repr(float(x)), "Y": repr(float(y))})
    groups = ET.SubElement(root, "AnnotationGroups")
    grp = ET.SubElement(groups, "Group", {"Name": group, "PartOfGroup": "None", "Color": "#ff0000"})
    ET.SubElement(grp, "Attributes")
    ET.indent(root, space="\t")
    text = '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    return write_text(path, text)


def _number(text: str | None) -> float:
    """A coordinate value; a decimal comma (``"1234,5"``, written by some locales) is accepted."""
    if text is None:
        raise ValueError("missing coordinate")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    return float(text)


def read_camelyon_xml(
    path: str | Path, groups: Sequence[str] | None = None, exclude: Sequence[str] = EXCLUSION_GROUPS
) -> list[np.ndarray]:
    """Polygons of an ASAP / CAMELYON16 annotation XML, vertices sorted by their ``Order``.

    Args:
        path: The ``.xml`` file.
        groups: Keep only annotations whose ``PartOfGroup`` is one of these; all groups if None.
        exclude: Groups to leave out when `groups` is None (CAMELYON16's exclusion group ``_2``).

    Returns:
        (N, 2) float arrays of (x, y) in level-0 pixels; annotations with fewer than 3 vertices are skipped.
    """
    path = require_file(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CorruptFileError(f"not valid XML ({exc})", path) from exc
    polygons = []
    for ann in root.iter("Annotation"):
        group = ann.get("PartOfGroup", "")
        if groups is not None and group not in groups:
            continue
        if groups is None and group in exclude:
            continue
        pts = []
        for i, c in enumerate(ann.iter("Coordinate")):
            try:
                pts.append((float(c.get("Order", i)), _number(c.get("X")), _number(c.get("Y"))))
            except ValueError as exc:
                raise CorruptFileError(f"bad coordinate in annotation '{ann.get('Name')}' ({exc})", path) from exc
        if len(pts) < 3:
            continue
        pts.sort(key=lambda t: t[0])
        polygons.append(_as_polygon(np.array([(x, y) for _, x, y in pts], dtype=np.float64)))
    return polygons
