"""Synthetic phantoms: files, manifests, ground truth consistency, site effects, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medwss.data.manifest import check_manifest, load_manifest
from medwss.data.phantoms import CT_LABELS, MRI_SITES, MRI_ZONES, PHANTOM_KINDS, generate, make_slide
from medwss.data.phantoms.common import assign_splits, balanced_label, case_rng, smooth_noise
from medwss.errors import MedwssError
from medwss.io.annotations import polygon_area, polygons_to_mask, read_camelyon_xml, read_geojson
from medwss.io.volumes import load_volume

WSI_SCALE = 0.5  # 2048 × 1536 level 0: two pyramid levels, fast


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


def _tiff_level0(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path, key=0)


@pytest.fixture(scope="module")
def wsi_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("wsi", tmp_path_factory.mktemp("wsi"), n=4, seed=0, scale=WSI_SCALE, progress=False)


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("ct", tmp_path_factory.mktemp("ct"), n=4, seed=0, progress=False)


@pytest.fixture(scope="module")
def mri_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("mri", tmp_path_factory.mktemp("mri"), n=6, seed=0, progress=False)  # 3 sites x 2


# --- common -------------------------------------------------------------------------------------


def test_case_rng_depends_on_seed_kind_and_index_only() -> None:
    a = case_rng(3, "ct", 5).random(4)
    np.testing.assert_array_equal(a, case_rng(3, "ct", 5).random(4))
    assert not np.array_equal(a, case_rng(3, "ct", 6).random(4))
    assert not np.array_equal(a, case_rng(4, "ct", 5).random(4))
    assert not np.array_equal(a, case_rng(3, "mri", 5).random(4))


def test_balanced_labels() -> None:
    labels = [balanced_label(7, "wsi", i) for i in range(20)]
    for n in range(2, 21):
        assert set(labels[:n]) == {0, 1}
    assert sum(labels) == 10  # one positive per pair


def test_assign_splits_patient_level_and_deterministic() -> None:
    patients = [f"p{i}" for i in range(10)]
    splits = assign_splits(patients, seed=1)
    assert splits == assign_splits(patients, seed=1)
    assert splits != assign_splits(patients, seed=2)
    counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 2, "test": 2}
    assert set(assign_splits(patients[:4], seed=0).values()) == {"train", "val", "test"}
    assert sorted(assign_splits(patients[:2], seed=0).values()) == ["test", "train"]
    assert list(assign_splits(patients[:1], seed=0).values()) == ["train"]


def test_smooth_noise() -> None:
    field = smooth_noise(np.random.default_rng(0), (40, 30, 8), cell=(8, 8, 2))
    assert field.shape == (40, 30, 8) and field.dtype == np.float32
    assert abs(field.mean()) < 1e-5 and field.std() == pytest.approx(1, abs=1e-4)
    # smooth: neighbours are strongly correlated
    assert np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1] > 0.9


def test_generate_rejects_unknown_kind_and_bad_arguments(tmp_path: Path) -> None:
    assert set(PHANTOM_KINDS) == {"wsi", "ct", "mri"}
    with pytest.raises(MedwssError, match="unknown phantom kind"):
        generate("pet", tmp_path)
    with pytest.raises(MedwssError):
        generate("ct", tmp_path, n=0)
    with pytest.raises(MedwssError):
        generate("ct", tmp_path, scale=0)


# --- WSI ----------------------------------------------------------------------------------------


def test_wsi_manifest_and_files(wsi_manifest: Path) -> None:
    assert check_manifest(wsi_manifest) == []
    m = load_manifest(wsi_manifest)
    assert len(m) == 4
    assert {c.modality for c in m} == {"WSI"}
    assert {c.site for c in m} == {"site_a", "site_b"}
    assert len({c.patient_id for c in m}) == 4
    assert {c.label for c in m} == {0, 1}
    for c in m:
        for key in ("tissue", "geojson", "xml"):
            assert (wsi_manifest.parent / c.meta[key]).is_file()
        assert c.meta["mask_downsample"] == "16"
        assert c.mask is not None and c.mask.name.endswith("_ds16.png")


def test_wsi_opens_in_openslide_with_mpp_and_levels(wsi_manifest: Path) -> None:
    import openslide

    for c in load_manifest(wsi_manifest):
        with openslide.OpenSlide(str(c.image)) as slide:
            assert slide.level_count >= 2
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.5)
            w, h = slide.dimensions
            assert (w, h) == (2048, 1536)
            mask = _png(c.mask)
            tissue = _png(c.image.parent.parent / c.meta["tissue"])
            assert mask.shape == tissue.shape == (h // 16, w // 16)


def test_wsi_ground_truth_consistent_with_image(wsi_manifest: Path) -> None:
    import openslide
    from PIL import Image

    for c in load_manifest(wsi_manifest):
        mask = _png(c.mask).astype(bool)
        tissue = _png(wsi_manifest.parent / c.meta["tissue"]).astype(bool)
        assert c.label == int(mask.any())
        assert not (mask & ~tissue).any()  # tumour lies inside tissue
        with openslide.OpenSlide(str(c.image)) as slide:
            level = slide.level_count - 1
            thumb = slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB")
        gray = np.asarray(thumb.resize(mask.shape[::-1], Image.BILINEAR).convert("L"), dtype=np.float64)
        inner = ndimage.binary_erosion(tissue, iterations=2)
        background = ~ndimage.binary_dilation(tissue, iterations=2)
        assert gray[background].mean() > 225  # white glass
        assert gray[inner & ~mask].mean() < gray[background].mean() - 25
        if c.label:
            core = ndimage.binary_erosion(mask)
            core = core if core.any() else mask
            assert gray[core].mean() < gray[inner & ~mask].mean() - 10  # tumour darker (denser nuclei)


def test_wsi_annotations_match_mask(wsi_manifest: Path) -> None:
    small_lesions = 0
    for c in load_manifest(wsi_manifest):
        mask = _png(c.mask).astype(bool)
        geo = read_geojson(wsi_manifest.parent / c.meta["geojson"])
        xml = read_camelyon_xml(wsi_manifest.parent / c.meta["xml"])
        assert len(geo) == len(xml) == int(c.meta["n_lesions"])
        for a, b in zip(geo, xml, strict=True):
            np.testing.assert_array_equal(a, b)
        drawn = polygons_to_mask(geo, mask.shape, downsample=16)
        if not c.label:
            assert not drawn.any()
            continue
        iou = (drawn & mask).sum() / (drawn | mask).sum()
        assert iou > 0.85
        area_um2 = sum(polygon_area(p) for p in geo) * 0.5**2
        assert area_um2 == pytest.approx(float(c.meta["tumor_area_um2"]), rel=0.05)
        for p in geo:
            extent_um = (p.max(axis=0) - p.min(axis=0)).max() * 0.5
            small_lesions += extent_um < 600
    assert small_lesions >= 1  # lesions of a few tiles exist


def test_wsi_pen_marks() -> None:
    slides = [make_slide(0, i, scale=0.25) for i in range(8)]
    assert {s.pen for s in slides} >= {"", "green"} or {s.pen for s in slides} >= {"", "blue"}
    for s in slides:
        if not s.pen:
            assert not s.ink.any()
            continue
        ink = ndimage.binary_erosion(s.ink.astype(bool)) & ~s.tissue.astype(bool)
        ink = ink if ink.any() else s.ink.astype(bool)
        rgb = s.rgb.reshape(s.ink.shape[0], 16, s.ink.shape[1], 16, 3).mean(axis=(1, 3))[ink]
        red, green, blue = rgb.mean(axis=0)
        assert (green if s.pen == "green" else blue) > red + 20


def test_wsi_same_seed_identical_and_independent_of_n(wsi_manifest: Path, tmp_path: Path) -> None:
    other = generate("wsi", tmp_path / "again", n=2, seed=0, scale=WSI_SCALE, progress=False)
    first, second = load_manifest(wsi_manifest).cases[:2], load_manifest(other).cases
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(_tiff_level0(a.image), _tiff_level0(b.image))
        np.testing.assert_array_equal(_png(a.mask), _png(b.mask))
        assert (wsi_manifest.parent / a.meta["geojson"]).read_text() == (other.parent / b.meta["geojson"]).read_text()


def test_wsi_different_seed_differs() -> None:
    a, b = make_slide(0, 0, scale=0.25), make_slide(1, 0, scale=0.25)
    assert a.rgb.shape == b.rgb.shape
    assert not np.array_equal(a.rgb, b.rgb)


@pytest.mark.slow
def test_wsi_default_size_has_several_levels(tmp_path: Path) -> None:
    import openslide

    manifest = generate("wsi", tmp_path, n=2, seed=0, progress=False)
    for c in load_manifest(manifest):
        with openslide.OpenSlide(str(c.image)) as slide:
            assert slide.dimensions == (4096, 3072)
            assert slide.level_count >= 3


# --- CT -----------------------------------------------------------------------------------------


def test_ct_manifest_and_volumes(ct_manifest: Path) -> None:
    assert check_manifest(ct_manifest) == []
    m = load_manifest(ct_manifest)
    assert len(m) == 4 and {c.modality for c in m} == {"CT"}
    assert {c.label for c in m} == {0, 1}
    assert {c.split for c in m} == {"train", "val", "test"}
    for c in m:
        image, labels = load_volume(c.image), load_volume(c.mask)
        assert image.array.dtype == np.int16
        assert image.shape == labels.shape == (96, 96, 48)
        np.testing.assert_allclose(image.spacing, (1.5, 1.5, 3.0))
        np.testing.assert_array_equal(image.affine, labels.affine)
        assert image.orientation == "RAS"
        assert set(np.unique(labels.array)) <= set(CT_LABELS)


def test_ct_anatomy_and_hounsfield_units(ct_manifest: Path) -> None:
    cysts = 0
    for c in load_manifest(ct_manifest):
        image, labels = load_volume(c.image), load_volume(c.mask)
        hu, lab = image.array.astype(np.float64), labels.array
        assert {2, 3} <= set(np.unique(lab))  # both kidneys
        # RAS: the right kidney (2) has larger world x than the left one (3).
        x_of = {v: (image.affine @ np.r_[np.argwhere(lab == v).mean(axis=0), 1])[0] for v in (2, 3)}
        assert x_of[2] > 0 > x_of[3]
        assert 10 <= np.median(hu[lab == 2]) <= 60 and 10 <= np.median(hu[lab == 3]) <= 60
        assert 40 <= np.median(hu[lab == 1]) <= 80  # liver
        assert np.median(hu[lab == 6]) > 200  # bone
        assert hu[:3, :3].mean() < -900  # air in the corners
        assert c.label == int((lab == 4).any())
        if c.label:
            assert 35 <= np.median(hu[lab == 4]) <= 85
        if (lab == 5).any():
            cysts += 1
            assert -15 <= np.median(hu[lab == 5]) <= 25
    assert cysts >= 1


def test_ct_scale_changes_voxels_not_field_of_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = generate("ct", tmp_path, n=1, seed=0, scale=0.5, progress=True)
    assert "phantom ct" in capsys.readouterr().err  # progress bar
    image = load_volume(load_manifest(manifest).cases[0].image)
    assert image.shape == (48, 48, 24)
    np.testing.assert_allclose(image.spacing, (3.0, 3.0, 6.0))


def test_ct_same_seed_identical_different_seed_differs(ct_manifest: Path, tmp_path: Path) -> None:
    same = load_manifest(generate("ct", tmp_path / "same", n=3, seed=0, progress=False))
    other = load_manifest(generate("ct", tmp_path / "other", n=1, seed=1, progress=False))
    ref = load_manifest(ct_manifest).cases
    for a, b in zip(ref[:3], same.cases, strict=True):
        np.testing.assert_array_equal(load_volume(a.image).array, load_volume(b.image).array)
        np.testing.assert_array_equal(load_volume(a.mask).array, load_volume(b.mask).array)
    assert not np.array_equal(load_volume(ref[0].image).array, load_volume(other.cases[0].image).array)


# --- MRI ----------------------------------------------------------------------------------------


def _center_world(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return (affine @ np.r_[(np.asarray(shape[:3]) - 1) / 2, 1])[:3]


def test_mri_manifest_and_grids(mri_manifest: Path) -> None:
    assert check_manifest(mri_manifest) == []
    m = load_manifest(mri_manifest)
    assert m.channels == ["t2", "adc", "hbv"]
    assert {c.modality for c in m} == {"MR"}
    assert {c.site for c in m} == set(MRI_SITES)
    assert {c.label for c in m} == {0, 1}
    for c in m:
        t2, adc, hbv = (load_volume(c.images[k]) for k in ("t2", "adc", "hbv"))
        lesion, zones = load_volume(c.mask), load_volume(mri_manifest.parent / c.meta["zones"])
        assert t2.shape != adc.shape and adc.shape == hbv.shape
        assert t2.spacing[0] < adc.spacing[0]
        np.testing.assert_allclose(t2.spacing, MRI_SITES[c.site]["t2_spacing"])
        np.testing.assert_array_equal(adc.affine, hbv.affine)
        centres = [_center_world(v.affine, v.shape) for v in (t2, adc, hbv)]
        for centre in centres[1:]:
            np.testing.assert_allclose(centre, centres[0], atol=0.5)
        np.testing.assert_array_equal(lesion.affine, t2.affine)
        np.testing.assert_array_equal(zones.affine, t2.affine)
        assert lesion.shape == zones.shape == t2.shape
        assert set(np.unique(zones.array)) == set(MRI_ZONES)
        assert c.label == int(lesion.array.any())


def test_mri_lesion_contrast(mri_manifest: Path) -> None:
    positives = 0
    for c in load_manifest(mri_manifest):
        if not c.label:
            continue
        positives += 1
        t2, adc, hbv = (load_volume(c.images[k]) for k in ("t2", "adc", "hbv"))
        lesion = load_volume(c.mask).array.astype(bool)
        zones = load_volume(mri_manifest.parent / c.meta["zones"]).array
        pz = (zones == 1) & ~lesion
        assert t2.array[lesion].mean() < 0.7 * t2.array[pz].mean()
        # Lesion centre and PZ voxels on the DWI grid, through world coordinates.
        to_dwi = np.linalg.inv(adc.affine) @ t2.affine
        centre = np.round((to_dwi @ np.r_[np.argwhere(lesion).mean(axis=0), 1])[:3]).astype(int)
        pz_idx = np.round((to_dwi[:3, :3] @ np.argwhere(pz).T).T + to_dwi[:3, 3]).astype(int)
        pz_idx = np.clip(pz_idx, 0, np.array(adc.shape) - 1)
        pz_adc = np.median(adc.array[tuple(pz_idx.T)])
        pz_hbv = np.median(hbv.array[tuple(pz_idx.T)])
        assert adc.array[tuple(centre)] < 0.8 * pz_adc
        assert hbv.array[tuple(centre)] > 1.5 * pz_hbv
    assert positives >= 1


def _relative_noise(t2: np.ndarray, zones: np.ndarray) -> float:
    x = t2.astype(np.float64)
    residual = x - ndimage.gaussian_filter(x, sigma=(1.5, 1.5, 0))
    return float(np.median(np.abs(residual)) / np.median(x[zones == 1]))


def test_mri_sites_differ_in_noise(mri_manifest: Path) -> None:
    noise = {}
    for c in load_manifest(mri_manifest):
        t2 = load_volume(c.images["t2"]).array
        zones = load_volume(mri_manifest.parent / c.meta["zones"]).array
        noise.setdefault(c.site, _relative_noise(t2, zones))
    assert noise["site_b"] > 1.5 * noise["site_a"]
    assert noise["site_c"] > 1.2 * noise["site_a"]


def test_mri_same_seed_identical_different_seed_differs(mri_manifest: Path, tmp_path: Path) -> None:
    same = load_manifest(generate("mri", tmp_path / "same", n=2, seed=0, progress=False)).cases
    other = load_manifest(generate("mri", tmp_path / "other", n=1, seed=5, progress=False)).cases
    ref = load_manifest(mri_manifest).cases
    for a, b in zip(ref[:2], same, strict=True):
        for k in ("t2", "adc", "hbv"):
            np.testing.assert_array_equal(load_volume(a.images[k]).array, load_volume(b.images[k]).array)
        np.testing.assert_array_equal(load_volume(a.mask).array, load_volume(b.mask).array)
    assert not np.array_equal(load_volume(ref[0].images["t2"]).array, load_volume(other[0].images["t2"]).array)


def test_mri_scale(tmp_path: Path) -> None:
    case = load_manifest(generate("mri", tmp_path, n=1, seed=0, scale=0.5, progress=False)).cases[0]
    assert load_volume(case.images["t2"]).shape == (64, 64, 10)
    assert load_volume(case.images["adc"]).shape == (16, 16, 10)


@pytest.mark.parametrize("kind", ["ct", "mri"])
def test_site_does_not_predict_label(kind, tmp_path):
    from collections import Counter

    m = load_manifest(generate(kind, tmp_path, n=12, seed=5, scale=0.5, progress=False))
    per_site = Counter((c.site, c.label) for c in m)
    for site in {c.site for c in m}:
        assert per_site[(site, 0)] == per_site[(site, 1)] > 0
