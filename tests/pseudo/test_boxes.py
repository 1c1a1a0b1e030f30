"""Boxes: sources (labels, activation maps, detector files) and box → pseudo-label merging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medwss.data.labels import IGNORE
from medwss.errors import FileNotFound, InvalidDataError
from medwss.pseudo.boxes import boxes_from_activation, boxes_from_labels, boxes_to_labels, load_boxes
from medwss.pseudo.protocol import Box, PromptableSegmenter
from medwss.pseudo.segmenters import BoxSegmenter


def test_box_geometry():
    b = Box((2, 3), (5, 7), label=4)
    assert b.mask((8, 8)).sum() == 3 * 4
    assert b.grow(3, (8, 8)) == Box((0, 0), (8, 8), 4)
    assert b.clip((4, 6)) == Box((2, 3), (4, 6), 4)
    with pytest.raises(ValueError):
        Box((3, 3), (3, 5))


def test_boxes_from_labels_one_per_component():
    lab = np.zeros((10, 10), int)
    lab[1:3, 1:4] = 1
    lab[6:9, 6:8] = 1
    lab[5, 0] = 2
    boxes = sorted(boxes_from_labels(lab), key=lambda b: (b.label, b.lo))
    assert [(b.lo, b.hi, b.label) for b in boxes] == [((1, 1), (3, 4), 1), ((6, 6), (9, 8), 1), ((5, 0), (6, 1), 2)]
    assert len(boxes_from_labels(lab, min_size=2)) == 2


def test_boxes_from_activation_threshold_and_score():
    cam = np.zeros((2, 12, 12))
    cam[0, 2:5, 2:6] = 0.9
    cam[0, 8, 8] = 0.6  # one pixel: below min_size
    cam[1, 6:10, 1:3] = 0.4
    boxes = boxes_from_activation(cam, threshold=0.5, min_size=2, labels=[3, 7])
    assert {(b.label, b.lo, b.hi) for b in boxes} == {(3, (2, 2), (5, 6)), (7, (6, 1), (10, 3))}
    assert max(b.score for b in boxes) == pytest.approx(0.9)


def test_load_boxes_csv_json(tmp_path):
    csv_path = tmp_path / "det.csv"
    csv_path.write_text("case_id,label,score,x0,y0,x1,y1\na,2,0.9,3.2,1,7,5.5\nb,1,0.8,0,0,2,2\na,1,0.1,0,0,2,2\n")
    boxes = load_boxes(csv_path, case_id="a", min_score=0.5)
    assert boxes == [Box((1, 3), (6, 7), 2, 0.9)]  # x = column, rounded outwards
    js = tmp_path / "det.json"
    js.write_text(json.dumps({"boxes": [{"label": 3, "box": [1, 2, 3, 4, 5, 6]}]}))
    assert load_boxes(js) == [Box((1, 2, 3), (4, 5, 6), 3, 1.0)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"label": 1}]))
    with pytest.raises(InvalidDataError, match="bad.json"):
        load_boxes(bad)
    with pytest.raises(FileNotFound):
        load_boxes(tmp_path / "missing.csv")


def test_boxes_to_labels_ring_and_overlap():
    img = np.zeros((12, 12))
    seg = BoxSegmenter()
    assert isinstance(seg, PromptableSegmenter)
    lab, prob = boxes_to_labels(img, [Box((2, 2), (6, 6), 1), Box((4, 4), (9, 9), 2)], seg, ring=0)
    assert (lab[4:6, 4:6] == IGNORE).all()  # claimed by two classes
    assert (lab[2:4, 2:6] == 1).all() and (lab[6:9, 6:9] == 2).all()
    assert lab[0, 0] == 0 and lab[10, 10] == 0  # outside every box: background
    assert prob.max() == 1.0
    ringed, _ = boxes_to_labels(img, [Box((3, 3), (9, 9), 1)], seg, ring=1)
    assert (ringed[4:8, 4:8] == 1).all()  # interior eroded by one
    assert (ringed[3, 3:9] == IGNORE).all() and (ringed[9, 3:9] == IGNORE).all()  # boundary ± 1
    assert ringed[1, 1] == 0 and ringed[2, 2] == 0  # cross-shaped dilation: outer corners stay background
    assert (ringed == IGNORE).sum() == 8 * 8 - 4 * 4 - 4
    same, _ = boxes_to_labels(img, [Box((2, 2), (6, 6), 1), Box((4, 4), (9, 9), 1)], seg, ring=0)
    assert (same[4:6, 4:6] == 1).all()  # same class overlapping: no conflict


def test_nested_box_wins_over_its_container():
    img = np.zeros((12, 12))
    boxes = [Box((5, 5), (7, 7), 4), Box((2, 2), (10, 10), 2)]  # a lesion box inside an organ box
    lab, _ = boxes_to_labels(img, boxes, BoxSegmenter(), ring=0)
    assert (lab[5:7, 5:7] == 4).all() and (lab[2:5, 2:10] == 2).all() and (lab == IGNORE).sum() == 0


class _TopHalf:
    """A refiner that keeps the top half of its box (the rest of the box is its background)."""

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        p = np.zeros(image.shape, np.float32)
        p[box.lo[0] : (box.lo[0] + box.hi[0]) // 2, box.lo[1] : box.hi[1]] = 1.0
        return p


def test_inside_ignore_keeps_refined_core_and_outside_background():
    img, box = np.zeros((12, 12)), [Box((2, 2), (10, 10), 1)]
    default, _ = boxes_to_labels(img, box, _TopHalf(), ring=0)
    assert (default[2:6, 2:10] == 1).all() and (default[6:10, 2:10] == 0).all()  # refiner's background kept
    lab, _ = boxes_to_labels(img, box, _TopHalf(), ring=0, inside="ignore")
    assert (lab[2:6, 2:10] == 1).all() and (lab[6:10, 2:10] == IGNORE).all()  # in the box, not refined: ignored
    assert (lab[:2] == 0).all() and (lab[10:] == 0).all() and (lab[:, :2] == 0).all()  # outside: background
    assert set(np.unique(lab)) == {IGNORE, 0, 1}
    with pytest.raises(ValueError, match="inside"):
        boxes_to_labels(img, box, _TopHalf(), inside="unsure")  # type: ignore[arg-type]
