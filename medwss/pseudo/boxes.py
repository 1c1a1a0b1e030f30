"""Box sources (given, from activation maps, from a detector's CSV/JSON, from label maps) and box → pseudo-label.

`boxes_to_labels` is the second stage of the "segment inside detector boxes" pipeline: each box
is segmented by a `PromptableSegmenter`, its mask takes the box's class, pixels claimed by two
classes whose boxes overlap become `IGNORE` (a box nested inside another — a lesion in its organ —
wins over it), so does a ring around every mask boundary, and everything outside the boxes is
background.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError, require_file
from medwss.pseudo.protocol import Box, PromptableSegmenter


def boxes_from_labels(labels: np.ndarray, classes: Sequence[int] | None = None, min_size: int = 1) -> list[Box]:
    """One box per connected component of each class of a label map (weak boxes from a full map)."""
    classes = [int(c) for c in np.unique(labels) if c > 0] if classes is None else list(classes)
    out: list[Box] = []
    for c in classes:
        comp, _ = ndimage.label(labels == c)
        for i, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is not None and int((comp[sl] == i).sum()) >= min_size:
                out.append(Box(tuple(s.start for s in sl), tuple(s.stop for s in sl), int(c)))
    return out


def jitter_boxes(
    boxes: Sequence[Box],
    shape: tuple[int, ...],
    fraction: float = 0.1,
    seed: int | Sequence[int] | np.random.Generator = 0,
) -> list[Box]:
    """Boxes as a detector would give them: each side moved by up to ±`fraction` of the box size.

    Every side of every box moves independently by an offset drawn uniformly from
    ``[-fraction, +fraction] × (the box's extent along that axis)``, rounded to whole pixels; the
    result is clipped to `shape` and keeps at least one pixel along each axis. Class and score are
    kept.

    Args:
        boxes: Boxes on a grid of `shape`.
        shape: The image grid (without a channel axis).
        fraction: Largest move of a side, as a fraction of the box's size along its axis.
        seed: Seed (or generator) of the offsets: the same seed gives the same boxes.

    Raises:
        ValueError: A negative `fraction`, or a box with another number of axes than `shape`.
    """
    if fraction < 0:
        raise ValueError(f"jitter fraction must be >= 0, got {fraction}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = []
    for b in boxes:
        if len(b.lo) != len(shape):
            raise ValueError(f"box {b.lo}..{b.hi} has {len(b.lo)} axes, the grid {len(shape)}")
        size = np.subtract(b.hi, b.lo).astype(np.float64)
        lo = np.round(np.asarray(b.lo) + rng.uniform(-fraction, fraction, len(shape)) * size).astype(int)
        hi = np.round(np.asarray(b.hi) + rng.uniform(-fraction, fraction, len(shape)) * size).astype(int)
        lo = np.clip(lo, 0, np.asarray(shape) - 1)
        hi = np.clip(np.maximum(hi, lo + 1), 1, np.asarray(shape))
        out.append(Box(tuple(int(v) for v in lo), tuple(int(v) for v in hi), b.label, b.score))
    return out


def boxes_from_activation(
    cams: np.ndarray, threshold: float = 0.5, min_size: int = 4, labels: Sequence[int] | None = None
) -> list[Box]:
    """Boxes around connected components of each activation map above `threshold` × its maximum.

    Args:
        cams: (K, *S) activation maps, one per foreground class.
        threshold: Relative threshold (of each map's maximum).
        min_size: Smallest component kept, in pixels.
        labels: Class value of each map; ``1..K`` if None.
    """
    labels = list(range(1, cams.shape[0] + 1)) if labels is None else list(labels)
    out: list[Box] = []
    for cam, c in zip(cams, labels, strict=True):
        peak = float(cam.max())
        if peak <= 0:
            continue
        comp, _ = ndimage.label(cam >= threshold * peak)
        for i, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is None or int((comp[sl] == i).sum()) < min_size:
                continue
            score = float(cam[sl][comp[sl] == i].max())
            out.append(Box(tuple(s.start for s in sl), tuple(s.stop for s in sl), int(c), score))
    return out


def _box_from_record(rec: dict, path: Path) -> Box:
    label = int(rec.get("label", 1))
    score = float(rec.get("score", 1.0))
    if "box" in rec:
        v = [float(x) for x in rec["box"]]
        d = len(v) // 2
        lo, hi = v[:d], v[d:]
    elif all(k in rec for k in ("x0", "y0", "x1", "y1")):  # detector convention: x = column, y = row
        lo, hi = [float(rec["y0"]), float(rec["x0"])], [float(rec["y1"]), float(rec["x1"])]
    elif all(k in rec for k in ("i0", "j0", "i1", "j1")):
        axes = ["i", "j"] + (["k"] if "k0" in rec and rec["k0"] not in ("", None) else [])
        lo, hi = [float(rec[f"{a}0"]) for a in axes], [float(rec[f"{a}1"]) for a in axes]
    else:
        raise InvalidDataError("a box needs 'box' [lo..., hi...], x0/y0/x1/y1 or i0/j0[/k0]/i1/j1[/k1]", path)
    try:
        return Box(tuple(int(np.floor(x)) for x in lo), tuple(int(np.ceil(x)) for x in hi), label, score)
    except ValueError as exc:
        raise InvalidDataError(str(exc), path) from exc


def load_boxes(path: str | Path, case_id: str | None = None, min_score: float = 0.0) -> list[Box]:
    """Boxes from a detector's CSV or JSON output, optionally only those of `case_id`.

    CSV columns: ``label``, ``score`` (optional), ``case_id`` (optional), and either ``x0,y0,x1,y1``
    (x = column, y = row, the usual detector convention) or ``i0,j0[,k0],i1,j1[,k1]`` (array axes).
    JSON: a list of records, or ``{"boxes": [...]}``, each with ``box`` = [lo..., hi...] in array
    order (or the CSV keys). Upper bounds are exclusive; fractional corners are rounded outwards.

    Raises:
        FileNotFound, InvalidDataError: Missing file, or a record without usable corners.
    """
    p = require_file(path)
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text())
        records = data.get("boxes", []) if isinstance(data, dict) else data
    elif p.suffix.lower() in (".csv", ".tsv"):
        with p.open(newline="") as fh:
            records = list(csv.DictReader(fh, delimiter="\t" if p.suffix.lower() == ".tsv" else ","))
    else:
        raise InvalidDataError("boxes must be a .csv, .tsv or .json file", p)
    out = []
    for rec in records:
        if case_id is not None and rec.get("case_id") not in (None, "", case_id):
            continue
        box = _box_from_record(rec, p)
        if box.score >= min_score:
            out.append(box)
    return out


def boxes_to_labels(
    image: np.ndarray,
    boxes: Sequence[Box],
    segmenter: PromptableSegmenter,
    threshold: float = 0.5,
    ring: int = 1,
    channels_last: bool | None = None,
    inside: Literal["background", "ignore"] = "background",
) -> tuple[np.ndarray, np.ndarray]:
    """Segment inside every box and merge the masks into one pseudo-label map.

    Args:
        image: 2D or 3D intensity array, or a colour image with its channels last ((H, W, 3) RGB).
        boxes: Boxes on the image grid; each mask takes its box's class.
        segmenter: Any `PromptableSegmenter`.
        threshold: Probability above which a pixel belongs to the box's object.
        ring: Width (pixels) of the uncertain band on each side of every mask boundary, set to `IGNORE`.
        channels_last: The last axis of `image` holds channels; None: inferred from the boxes (a
            colour image has one axis more than its boxes). Give True for a colour image without boxes.
        inside: Pixels inside a box that no mask claims: ``background`` (the refiner's call), or
            ``ignore`` (`IGNORE`: the box only says "object somewhere in here", so its sharp mask
            is kept as foreground while the rest of the box is left unlabelled; "refined core,
            box-ignore"). Outside every box is background either way.

    Boxes are painted largest first; where masks of different classes meet, a box lying inside the
    other keeps its class (nested), otherwise the shared pixels are `IGNORE` (overlap).

    Returns:
        ``(labels, prob)``: int64 map (0 background, classes, `IGNORE` on rings and on pixels two
        different classes claim) and the per-pixel maximum object probability.
    """
    if inside not in ("background", "ignore"):
        raise ValueError(f"inside must be 'background' or 'ignore', got {inside!r}")
    if channels_last is None:
        channels_last = bool(boxes) and image.ndim == len(boxes[0].lo) + 1
    shape = tuple(image.shape[:-1] if channels_last else image.shape)
    labels = np.zeros(shape, dtype=np.int64)
    owner = np.full(shape, -1, dtype=np.int64)  # index of the box whose mask holds the pixel
    prob = np.zeros(shape, dtype=np.float32)
    conflict = np.zeros(shape, dtype=bool)
    uncertain = np.zeros(shape, dtype=bool)
    boxes = sorted((b.clip(shape) for b in boxes), key=lambda b: -int(np.prod(np.subtract(b.hi, b.lo))))
    for i, box in enumerate(boxes):  # largest first: a box nested in another one is painted over it
        p = np.asarray(segmenter.segment(image, box), dtype=np.float32)
        m = p >= threshold
        if not m.any():
            continue
        taken = m & (labels > 0) & (labels != box.label)
        for j in np.unique(owner[taken]):
            if not _inside(box, boxes[j]):  # overlapping, not nested: neither class can be trusted
                conflict |= taken & (owner == j)
        free = m & ((labels == 0) | (labels != box.label))
        labels[free] = box.label
        owner[free] = i
        prob = np.maximum(prob, p)
        if ring > 0:
            uncertain |= ndimage.binary_dilation(m, iterations=ring) & ~ndimage.binary_erosion(m, iterations=ring)
    if inside == "ignore":
        for box in boxes:
            region = labels[box.slices]
            region[region == 0] = IGNORE
    labels[conflict | uncertain] = IGNORE
    return labels, prob


def _inside(inner: Box, outer: Box) -> bool:
    return all(a >= c and b <= d for a, b, c, d in zip(inner.lo, inner.hi, outer.lo, outer.hi, strict=True))
