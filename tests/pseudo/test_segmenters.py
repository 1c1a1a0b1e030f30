"""Weight-free box segmenters recover a planted blob; SAM/MedSAM adapter logic with a fake predictor."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import ConfigError, FileNotFound, MedwssError
from medwss.pseudo.protocol import Box
from medwss.pseudo.sam import SamSegmenter, build_sam_predictor
from medwss.pseudo.segmenters import create_box_segmenter


def _blob(rng, noise=15.0):
    yy, xx = np.mgrid[:48, :48]
    blob = ((yy - 22) ** 2 / 64 + (xx - 25) ** 2 / 110) < 1
    return blob, blob * 100.0 + rng.normal(0, noise, blob.shape)


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("name", ["random_walker", "chan_vese", "otsu"])
def test_segmenter_recovers_blob_inside_box(name, rng):
    blob, img = _blob(rng)
    prob = create_box_segmenter(name).segment(img, Box((12, 13), (33, 37), label=2))
    assert prob.shape == img.shape and prob.min() >= 0 and prob.max() <= 1
    assert _dice(prob > 0.5, blob) > 0.8
    assert prob[:10].max() == 0  # nothing far outside the box


def test_raw_box_is_worse_than_random_walker(rng):
    blob, img = _blob(rng)
    box = Box((12, 13), (33, 37))
    raw = create_box_segmenter("box").segment(img, box) > 0.5
    rw = create_box_segmenter("random_walker").segment(img, box) > 0.5
    assert _dice(rw, blob) > _dice(raw, blob) + 0.1


def test_random_walker_3d(rng):
    zz, yy, xx = np.mgrid[:20, :20, :12]
    ball = ((zz - 10) ** 2 + (yy - 9) ** 2 + (xx - 6) ** 2 * 4) < 36
    img = ball * 100.0 + rng.normal(0, 10, ball.shape)
    prob = create_box_segmenter("random_walker").segment(img, Box((3, 2, 2), (17, 16, 11)))
    assert _dice(prob > 0.5, ball) > 0.8


def test_ellipse_is_the_inscribed_ellipse_and_its_corners_can_be_ignored(rng):
    from medwss.data.labels import IGNORE
    from medwss.pseudo.boxes import boxes_to_labels

    box = Box((10, 8), (30, 40))
    grey = rng.normal(0, 1, (48, 48))
    prob = create_box_segmenter("ellipse").segment(grey, box)
    assert prob.shape == grey.shape and set(np.unique(prob)) == {0.0, 1.0}
    assert prob[20, 24] == 1 and prob[10, 8] == 0 and prob[29, 39] == 0  # centre in, corners out
    assert prob[:10].max() == 0 and prob[:, 40:].max() == 0  # nothing outside the box
    assert abs(prob.sum() / (20 * 32) - np.pi / 4) < 0.05
    rgb = (rng.uniform(0, 255, (48, 48, 3))).astype(np.uint8)  # colour frames: the same mask
    assert np.array_equal(create_box_segmenter("ellipse").segment(rgb, box), prob)
    assert create_box_segmenter("ellipse", fraction=0.5).segment(grey, box).sum() < prob.sum() / 3
    labels, _ = boxes_to_labels(rgb, [box], create_box_segmenter("ellipse"), ring=0, inside="ignore")
    assert labels[10, 8] == IGNORE and labels[20, 24] == 1 and labels[5, 5] == 0
    with pytest.raises(ConfigError, match="fraction"):
        create_box_segmenter("ellipse", fraction=0.0)


def test_unknown_segmenter():
    with pytest.raises(ConfigError, match="random_walker"):
        create_box_segmenter("no_such_segmenter")


def test_sam_missing_package_is_one_clear_line():
    with pytest.raises(MedwssError) as err:
        build_sam_predictor("sam.pth")
    msg = str(err.value)
    assert "segment_anything" in msg and "checkpoint" in msg and "\n" not in msg
    with pytest.raises(MedwssError, match="segment_anything"):
        create_box_segmenter("medsam", checkpoint="medsam.pth")


def test_sam_bad_setting_is_named_before_any_weights_are_read():
    with pytest.raises(ConfigError, match="'medsam' has no setting 'dilate'.*checkpoint"):
        create_box_segmenter("medsam", checkpoint="missing.pth", dilate=2)
    pred = FakePredictor()
    seg = create_box_segmenter("sam", predictor=pred, window=(0, 100))
    assert isinstance(seg, SamSegmenter) and seg.name == "sam" and seg.window == (0, 100)


def test_sam_missing_checkpoint(monkeypatch, tmp_path):
    import sys
    import types

    fake = types.ModuleType("segment_anything")
    fake.SamPredictor = object  # type: ignore[attr-defined]
    fake.sam_model_registry = {}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "segment_anything", fake)
    with pytest.raises(FileNotFound, match="checkpoint"):
        build_sam_predictor(tmp_path / "none.pth")


class FakePredictor:
    """Records calls; returns logits +5 inside the prompted box, -5 elsewhere."""

    def __init__(self):
        self.images, self.boxes = [], []

    def set_image(self, rgb):
        self.images.append(rgb)
        self.shape = rgb.shape[:2]

    def predict(self, box=None, multimask_output=True, return_logits=False):
        assert return_logits and not multimask_output
        self.boxes.append(box)
        x0, y0, x1, y1 = (int(v) for v in box)
        logits = np.full((1, *self.shape), -5.0)
        logits[0, y0 : y1 + 1, x0 : x1 + 1] = 5.0
        return logits, np.array([0.9]), None


def test_sam_adapter_with_fake_predictor(rng):
    pred = FakePredictor()
    seg = SamSegmenter(predictor=pred, flavour="medsam")
    img = rng.normal(0, 50, (30, 40))
    p1 = seg.segment(img, Box((5, 10), (15, 30), label=1))
    seg.segment(img, Box((0, 0), (3, 3), label=2))
    assert len(pred.images) == 1  # the image is embedded once for both boxes
    rgb = pred.images[0]
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert pred.boxes[0].tolist() == [10, 5, 29, 14]  # x0, y0, x1, y1 (inclusive), x = column
    assert p1[5:15, 10:30].min() == pytest.approx(1 / (1 + np.exp(-5)), rel=1e-5)
    assert p1[20, 35] == pytest.approx(1 / (1 + np.exp(5)), rel=1e-4)
    seg.segment(img + 1.0, Box((5, 10), (15, 30)))
    assert len(pred.images) == 2  # a new image is embedded again
    with pytest.raises(MedwssError, match="2D"):
        seg.segment(np.zeros((4, 4, 4)), Box((0, 0, 0), (2, 2, 2)))
