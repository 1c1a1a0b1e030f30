"""Box segmenters on RGB frames (colour features, GrabCut-style), jittered boxes, and real Kvasir-SEG frames."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medwss.data.labels import IGNORE
from medwss.errors import ConfigError, InvalidDataError
from medwss.pseudo.box_colour import box_features, contrast_image, is_colour, lab_image
from medwss.pseudo.box_grabcut import GaussianMixture, GrabCutSegmenter, min_cut
from medwss.pseudo.boxes import boxes_from_labels, boxes_to_labels, jitter_boxes
from medwss.pseudo.protocol import Box
from medwss.pseudo.sam import SamSegmenter
from medwss.pseudo.segmenters import BOX_SEGMENTERS, create_box_segmenter

REFINED = ("random_walker", "chan_vese", "otsu", "grabcut")


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _frame(rng, same_luminance=False):
    """A 64×64 RGB frame: an elliptic 'polyp' in another colour than the 'mucosa', with noise."""
    from skimage.color import lab2rgb

    yy, xx = np.mgrid[:64, :64]
    blob = ((yy - 30) ** 2 / 150 + (xx - 33) ** 2 / 220) < 1
    lab = np.zeros((64, 64, 3))
    lab[..., 0] = 60.0 if same_luminance else np.where(blob, 70.0, 50.0)
    lab[..., 1] = np.where(blob, 35.0, 10.0)  # redder polyp
    lab[..., 2] = 15.0
    lab += rng.normal(0, 3.0, lab.shape)
    rgb = (np.clip(lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)
    return blob, rgb


def test_jitter_boxes_seeded_bounded_and_clipped():
    boxes = [Box((10, 20), (50, 60), label=1, score=0.7), Box((0, 0), (8, 100), label=2)]
    a = jitter_boxes(boxes, (64, 100), 0.1, seed=3)
    assert a == jitter_boxes(boxes, (64, 100), 0.1, seed=3)
    assert a != jitter_boxes(boxes, (64, 100), 0.1, seed=4)
    for b, j in zip(boxes, a, strict=True):
        size = np.subtract(b.hi, b.lo)
        assert np.all(np.abs(np.subtract(j.lo, b.lo)) <= 0.1 * size + 0.5)
        assert np.all(np.subtract(j.hi, b.hi) <= 0.1 * size + 0.5)
        assert j.label == b.label and j.score == b.score
        assert all(0 <= lo < hi <= s for lo, hi, s in zip(j.lo, j.hi, (64, 100), strict=True))
    assert jitter_boxes(boxes, (64, 100), 0.0, seed=0) == boxes
    moved = [jitter_boxes(boxes[:1], (64, 100), 0.1, seed=s)[0] for s in range(50)]
    assert len({(m.lo, m.hi) for m in moved}) > 10  # the sides really move
    with pytest.raises(ValueError, match="fraction"):
        jitter_boxes(boxes, (64, 100), -0.1)
    with pytest.raises(ValueError, match="axes"):
        jitter_boxes(boxes, (64, 100, 3), 0.1)


@pytest.mark.parametrize("name", REFINED)
def test_segmenters_recover_a_colour_polyp(name, rng):
    blob, rgb = _frame(rng)
    box = boxes_from_labels(blob.astype(int))[0]
    prob = create_box_segmenter(name).segment(rgb, box)
    assert prob.shape == blob.shape and prob.min() >= 0 and prob.max() <= 1
    assert _dice(prob > 0.5, blob) > 0.85
    assert prob[~box.mask(blob.shape)].max() == 0  # nothing outside the box


@pytest.mark.parametrize("name", ["chan_vese", "otsu"])
def test_contrast_feature_finds_a_polyp_of_equal_luminance(name, rng):
    blob, rgb = _frame(rng, same_luminance=True)
    box = jitter_boxes(boxes_from_labels(blob.astype(int)), blob.shape, 0.1, seed=1)[0]
    by_colour = create_box_segmenter(name, colour="contrast").segment(rgb, box) > 0.5
    by_grey = create_box_segmenter(name, colour="grey").segment(rgb, box) > 0.5
    assert _dice(by_colour, blob) > 0.8
    assert _dice(by_colour, blob) > _dice(by_grey, blob) + 0.2


def test_boxes_to_labels_on_rgb(rng):
    blob, rgb = _frame(rng)
    boxes = boxes_from_labels(blob.astype(int))
    labels, prob = boxes_to_labels(rgb, boxes, create_box_segmenter("otsu"), ring=1)
    assert labels.shape == prob.shape == blob.shape
    assert set(np.unique(labels)) <= {IGNORE, 0, 1}
    assert _dice(labels == 1, blob) > 0.8
    raw, _ = boxes_to_labels(rgb, boxes, create_box_segmenter("box"), ring=0)
    assert (raw == 1).sum() == boxes[0].mask(blob.shape).sum()
    empty, _ = boxes_to_labels(rgb, [], create_box_segmenter("otsu"), channels_last=True)
    assert empty.shape == blob.shape and not empty.any()


def test_colour_features(rng):
    _, rgb = _frame(rng)
    box = Box((10, 10), (50, 55))
    assert is_colour(rgb, box) and not is_colour(rgb[..., 0], box)
    lab = lab_image(rgb)
    assert lab.shape == rgb.shape and lab[..., 0].min() >= 0 and lab[..., 0].max() <= 1.0
    for name, shape in (("lab", rgb.shape), ("rgb", rgb.shape), ("grey", rgb.shape[:2]), ("contrast", rgb.shape[:2])):
        f = box_features(rgb, box, name)
        assert f.shape == shape and f.dtype == np.float32 and np.isfinite(f).all()
    c = box_features(rgb, box, "contrast")
    assert c.min() >= 0 and c.max() <= 1
    flat = contrast_image(lab, np.zeros(rgb.shape[:2], bool), np.ones(rgb.shape[:2], bool))
    assert flat.shape == rgb.shape[:2]  # an empty object sample falls back on luminance
    with pytest.raises(InvalidDataError, match="channels"):
        is_colour(np.zeros((8, 8, 5)), Box((0, 0), (4, 4)))
    with pytest.raises(ConfigError, match="contrast"):
        create_box_segmenter("otsu", colour="lab")  # Otsu needs one channel
    with pytest.raises(ConfigError, match="colour feature"):
        create_box_segmenter("random_walker", colour="hsv")


def test_grabcut_is_registered_and_works_on_grey_2d_and_3d(rng):
    assert "grabcut" in BOX_SEGMENTERS
    assert isinstance(create_box_segmenter("grabcut"), GrabCutSegmenter)
    yy, xx = np.mgrid[:48, :48]
    blob = ((yy - 22) ** 2 / 64 + (xx - 25) ** 2 / 110) < 1
    img = blob * 100.0 + rng.normal(0, 15.0, blob.shape)
    prob = create_box_segmenter("grabcut").segment(img, Box((12, 13), (33, 37)))
    assert _dice(prob > 0.5, blob) > 0.8
    zz, yy, xx = np.mgrid[:20, :20, :12]
    ball = ((zz - 10) ** 2 + (yy - 9) ** 2 + (xx - 6) ** 2 * 4) < 36
    vol = ball * 100.0 + rng.normal(0, 10, ball.shape)
    assert _dice(create_box_segmenter("grabcut").segment(vol, Box((3, 2, 2), (17, 16, 11))) > 0.5, ball) > 0.8
    whole = create_box_segmenter("grabcut").segment(img, Box((0, 0), (48, 48)))  # box = image: its rim is background
    assert whole.shape == img.shape and whole[0].max() == 0


def test_grabcut_dilate_grows_the_mask_inside_the_box(rng):
    blob, rgb = _frame(rng)
    box = Box((14, 16), (47, 52))
    plain = create_box_segmenter("grabcut").segment(rgb, box) > 0.5
    grown = create_box_segmenter("grabcut", dilate=2).segment(rgb, box) > 0.5
    from scipy import ndimage

    assert np.array_equal(grown, ndimage.binary_dilation(plain, iterations=2) & box.mask(blob.shape))
    labels, _ = boxes_to_labels(rgb, [box], create_box_segmenter("grabcut", dilate=2), ring=1, inside="ignore")
    assert labels[box.slices][~grown[box.slices] & (labels[box.slices] != 1)].tolist().count(0) == 0  # box-ignore
    assert (labels == 1).sum() > (plain.sum() * 0.9) and labels[0, 0] == 0
    with pytest.raises(ConfigError, match="dilate"):
        create_box_segmenter("grabcut", dilate=-1)


def test_min_cut_and_mixture():
    # a chain 0-1-2: node 0 pulled to the source, node 2 to the sink, a weak link 1-2 is where it cuts
    side = min_cut(
        np.array([10.0, 0, 0]), np.array([0, 0, 10.0]), (np.array([0, 1]), np.array([1, 2])), np.array([5.0, 1.0])
    )
    assert side.tolist() == [True, True, False]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(3, 0.1, (200, 2))])
    gm = GaussianMixture(2).fit(x)
    assert sorted(np.round(gm.means[:, 0]).tolist()) == [0.0, 3.0]
    s = gm.score_samples(np.array([[0.0, 0.0], [1.5, 1.5]]))
    assert s[0] > s[1] + 10
    again = GaussianMixture(2).fit(x, previous=gm)  # warm start
    assert np.allclose(np.sort(again.means[:, 0]), np.sort(gm.means[:, 0]), atol=0.05)


class _FakePredictor:
    def set_image(self, rgb):
        self.rgb = rgb

    def predict(self, box=None, multimask_output=True, return_logits=False):
        x0, y0, x1, y1 = (int(v) for v in box)
        logits = np.full((1, *self.rgb.shape[:2]), -5.0)
        logits[0, y0 : y1 + 1, x0 : x1 + 1] = 5.0
        return logits, np.array([0.9]), None


def test_sam_adapter_takes_rgb_frames_unchanged(rng):
    _, rgb = _frame(rng)
    pred = _FakePredictor()
    prob = SamSegmenter(predictor=pred).segment(rgb, Box((5, 10), (20, 30)))
    assert np.array_equal(pred.rgb, rgb)  # colour passed as it is, not windowed to grey
    assert prob.shape == rgb.shape[:2] and prob[10, 15] > 0.99 and prob[40, 40] < 0.01
    SamSegmenter(predictor=pred).segment(rgb.astype(np.float32) / 255.0, Box((5, 10), (20, 30)))
    assert pred.rgb.dtype == np.uint8 and np.abs(pred.rgb.astype(int) - rgb).max() <= 1


@pytest.mark.slow
def test_real_kvasir_frames(real):
    from PIL import Image

    root = real / "endo" / "polyp"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"{root} not found")
    with (root / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"][:4]
    box_d, refined_d = [], {n: [] for n in REFINED}
    for i, r in enumerate(rows):
        rgb = np.asarray(Image.open(root / r["image"]).convert("RGB").resize((128, 128), Image.Resampling.BOX))
        mask = np.asarray(Image.open(root / r["mask"]).convert("L").resize((128, 128), Image.Resampling.BOX)) > 127
        assert rgb.shape == (128, 128, 3) and mask.any()
        boxes = jitter_boxes(boxes_from_labels(mask.astype(int), min_size=10), mask.shape, 0.1, seed=[0, i])
        inside = np.any([b.mask(mask.shape) for b in boxes], axis=0)
        box_d.append(_dice(inside, mask))
        for name in REFINED:
            labels, _ = boxes_to_labels(rgb, boxes, create_box_segmenter(name), ring=1)
            assert labels.shape == mask.shape and set(np.unique(labels)) <= {IGNORE, 0, 1}
            assert not (labels[~inside] == 1).any()
            keep = labels != IGNORE
            refined_d[name].append(_dice((labels == 1) & keep, mask & keep))
    assert np.mean(box_d) > 0.5
    for name in ("chan_vese", "otsu", "grabcut"):  # colour-aware refiners are useful on real frames
        assert np.mean(refined_d[name]) > 0.6, name
