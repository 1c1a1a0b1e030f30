"""Orientation-proof scribble input on a real brain MRI case (LGG): a permuted copy gives the same crop and outputs.

The permuted copy (`permuted_copy(vol, (2, 0, 1))`: slices first, same world geometry) of every
file of one LGG case must give identical image stacks, masks and weak labels on the crop grid, and
its predictions / weak-label files must be the permuted ones of the original, with its own affine.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medwss.data.labels import IGNORE
from medwss.data.manifest import Manifest, load_manifest, write_manifest
from medwss.data.orientation import permuted_copy
from medwss.io import load_volume, save_nifti
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.mri_input import load_case, paste_back

CASE = "TCGA_CS_4942"  # 128 x 128 x 20, tumour on 6 slices
CHANNELS = ("flair", "t1pre", "t1post")
AXES = (2, 0, 1)
INPUT = {"crop_mm": 64.0, "spacing_mm": 1.0, "use_zones": False}


def _perm(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, AXES)


@pytest.fixture(scope="module")
def lgg(real: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Manifest]:
    """(original one-case manifest, manifest of the permuted copy of all its files)."""
    src = real / "mri" / "lgg" / "manifest.csv"
    if not src.is_file():
        pytest.skip(f"LGG data not found: {src}")
    full = load_manifest(src)
    case = next(c for c in full.cases if c.case_id == CASE)
    tmp = tmp_path_factory.mktemp("lgg_permuted")
    row: dict[str, object] = {"case_id": CASE, "patient_id": case.patient_id, "site": case.site, "modality": "MR"}
    for name, path in [*((f"image_{k}", p) for k, p in case.images.items()), ("mask", case.mask)]:
        target = tmp / f"{CASE}_{name}.nii.gz"
        save_nifti(permuted_copy(load_volume(path), AXES), target)
        row[name] = target
    row |= {"label": 1, "split": "train"}
    return Manifest(full.path, [case]), load_manifest(write_manifest([row], tmp / "manifest.csv"))


def test_permuted_copy_gives_the_same_crop(lgg):
    orig, perm = lgg
    a = load_case(orig.cases[0], CHANNELS, root=orig.path.parent, **INPUT)
    b = load_case(perm.cases[0], CHANNELS, root=perm.path.parent, **INPUT)
    assert load_volume(perm.cases[0].images["flair"]).shape == (20, 128, 128)  # stored slices first
    assert a.image.shape == (3, 64, 64, 20)  # the crop's last axis is axial in both
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.grid.affine, b.grid.affine, atol=1e-9)
    assert int((a.mask > 0).any((0, 1)).sum()) == 6  # tumour slices of the case


def test_resampled_crop_is_the_same_too(lgg):
    orig, perm = lgg
    opts = {**INPUT, "spacing_mm": 1.5, "crop_mm": 60.0}
    a = load_case(orig.cases[0], CHANNELS, root=orig.path.parent, **opts)
    b = load_case(perm.cases[0], CHANNELS, root=perm.path.parent, **opts)
    assert a.image.shape == (3, 40, 40, 20)
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_paste_back_lands_on_the_stored_grid(lgg):
    orig, perm = lgg
    a = load_case(orig.cases[0], CHANNELS, root=orig.path.parent, **INPUT)
    b = load_case(perm.cases[0], CHANNELS, root=perm.path.parent, **INPUT)
    prob = np.random.default_rng(0).uniform(size=a.image.shape[1:]).astype(np.float32)
    back_a, back_b = paste_back(prob, a.grid, a.reference), paste_back(prob, b.grid, b.reference)
    assert back_b.shape == (20, 128, 128)
    np.testing.assert_allclose(back_b, _perm(back_a), atol=1e-6)
    np.testing.assert_allclose(b.reference.affine, nib.load(perm.cases[0].images["flair"]).affine)
    mask_back = paste_back(b.mask.astype(np.float32), b.grid, b.reference) > 0.5  # exact at the stored spacing
    np.testing.assert_array_equal(mask_back, load_volume(perm.cases[0].mask).array > 0)


def test_predictions_of_the_permuted_case(lgg, tmp_path):
    from medwss.scribble.workflow import predict_cases
    from medwss.seg.train import build, save_segmenter

    orig, perm = lgg
    cfg = ScribbleConfig(sequences=CHANNELS, channels=(4, 8), **INPUT)
    seg = cfg.seg_config()
    model = tmp_path / "model.pt"
    save_segmenter(build(seg), seg, model, meta={"scribble": cfg.model_dump(mode="json")})  # untrained is enough
    preds = []
    for name, m in (("orig", orig), ("perm", perm)):
        assert predict_cases(m, m.cases, [model], tmp_path / name, progress=False)["done"] == 1
        preds.append(load_volume(tmp_path / name / "predictions" / f"{CASE}.nii.gz"))
    a, b = preds
    np.testing.assert_allclose(b.array, _perm(a.array), atol=1e-5)
    np.testing.assert_allclose(b.affine, load_volume(perm.cases[0].images["flair"]).affine)


@pytest.mark.parametrize("kind", ["block", "circle"])
def test_weak_labels_follow_the_permutation(lgg, tmp_path, kind):
    from medwss.scribble.annotate import write_weak_labels
    from medwss.scribble.dataset import prepare_case

    orig, perm = lgg
    files = []
    for name, m in (("orig", orig), ("perm", perm)):
        summary = write_weak_labels(m, tmp_path / name, kind, seed=0, options={"size": 5}, progress=False)
        assert summary["done"] == 1 and not summary["failed"]
        files.append(tmp_path / name / "scribbles" / f"{CASE}_scribble.nii.gz")
    raw = [nib.load(f) for f in files]
    assert all(r.get_data_dtype() == np.int16 for r in raw)
    a, b = (np.asarray(r.dataobj) for r in raw)
    assert (a == -1).any() and (a == 1).any() and (a == 0).any()
    np.testing.assert_array_equal(b, _perm(a))
    np.testing.assert_allclose(raw[1].affine, load_volume(perm.cases[0].mask).affine)
    # read back through the scribble column: -1 on disk = IGNORE in memory, same target for both
    cfg = ScribbleConfig(sequences=CHANNELS, **INPUT)
    targets = []
    for name in ("orig", "perm"):
        m = load_manifest(tmp_path / name / "manifest.csv")
        p = prepare_case(m.cases[0], cfg, m.path.parent)
        targets.append(p.target)
        lab = p.target != IGNORE
        assert (~lab).any() and set(np.unique(p.target)) <= {IGNORE, 0, 1}
        np.testing.assert_array_equal(p.target[lab & (p.target > 0)] > 0, p.input.mask[lab & (p.target > 0)] > 0)
    np.testing.assert_array_equal(*targets)


def test_weak_labels_made_on_the_fly_match(lgg):
    from medwss.scribble.dataset import prepare_case

    orig, perm = lgg
    cfg = ScribbleConfig(sequences=CHANNELS, weak_kind="block", weak_options={"size": 5}, **INPUT)
    a = prepare_case(orig.cases[0], cfg, orig.path.parent)
    b = prepare_case(perm.cases[0], cfg, perm.path.parent)
    assert (a.target == 1).any()
    np.testing.assert_array_equal(a.target, b.target)


def test_single_image_manifest_and_named_channels(lgg, tmp_path):
    from medwss.errors import InvalidDataError
    from medwss.scribble.dataset import build_samples

    orig, _ = lgg
    case = orig.cases[0]
    row = {"case_id": CASE, "patient_id": CASE, "site": case.site, "modality": "MR", "label": 1}
    row |= {"image": case.images["flair"], "mask": case.mask}
    single = load_manifest(write_manifest([row], tmp_path / "manifest.csv"))
    ref = load_case(orig.cases[0], CHANNELS, **INPUT)  # reference = flair, the first channel
    for seq in (("image",), ("t2",)):  # a single image column is the reference, by either name
        ci = load_case(single.cases[0], seq, **INPUT)
        np.testing.assert_array_equal(ci.image[0], ref.image[0])
        np.testing.assert_array_equal(ci.mask, ref.mask)
    ci = load_case(single.cases[0], **INPUT)  # no channels named: the case's own (one image)
    np.testing.assert_array_equal(ci.image, ref.image[:1])
    with pytest.raises(InvalidDataError, match="lacks channel.*adc"):
        load_case(single.cases[0], ("t2", "adc", "hbv"), **INPUT)  # the prostate setting: t2 found, adc not
    with pytest.raises(InvalidDataError, match="lacks channel.*t2"):
        load_case(case, ("t2", "flair"), **INPUT)
    samples, failures = build_samples([case], ScribbleConfig(sequences=CHANNELS, oversample=1, **INPUT), None)
    assert not failures and len(samples) == 20 and samples[0].image.shape == (3, 64, 64)


def test_overlays_are_axial_for_the_permuted_case(lgg, tmp_path):
    from medwss.scribble.report import _overlays

    orig, perm = lgg
    pngs = []
    for name, m in (("orig", orig), ("perm", perm)):
        out = tmp_path / name
        pred = out / "s" / "ensemble" / "predictions" / f"{CASE}.nii.gz"
        mask = load_volume(m.cases[0].mask)
        save_nifti(mask.with_array(mask.array.astype(np.float32)), pred)
        (out / "cases.csv").write_text(f"setting,model,case_id,domain,label\ns,ensemble,{CASE},out_of_domain,1\n")
        ((title, png),) = _overlays(m, out, out / "cases.csv", CHANNELS)
        pngs.append(png.read_bytes())
    assert pngs[0] == pngs[1]
