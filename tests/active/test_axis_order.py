"""Active learning does not depend on the stored axis order: the real CT, a permuted and a permuted+flipped copy.

Pool, thumbnails, full-resolution slices, a seeded selection and the exported slice files are the
same for the three copies; annotations on the exported slices ingest against each copy, with -1
and 255 both read as unlabelled, and a file on the wrong grid is rejected naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.active.export import export_slices
from medwss.active.features import feature_provider
from medwss.active.ingest import read_annotation, scan_folder
from medwss.active.metric import MetricConfig
from medwss.active.pool import SliceReader, build_pool
from medwss.active.strategies import SelectionContext, get_strategy
from medwss.data.labels import IGNORE, LabelSpec, save_label_map
from medwss.data.manifest import Case
from medwss.data.orientation import permuted_copy
from medwss.errors import InvalidDataError
from medwss.io import load_volume, save_nifti
from medwss.io.volume import Volume

VOLUMES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "volumes"
COPIES = {"stored": ((0, 1, 2), ()), "permuted": ((2, 0, 1), ()), "permuted_flipped": ((2, 0, 1), (1, 2))}
KIDNEYS = LabelSpec.from_classes({"kidneys": [2, 3]})


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict[str, Case]:
    """The real CT and its organ map, stored three ways (same world geometry), as manifest cases."""
    if not (VOLUMES / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real test data folder not found: {VOLUMES}")
    ct, seg = load_volume(VOLUMES / "example_ct_sm.nii.gz"), load_volume(VOLUMES / "example_seg.nii.gz")
    root = tmp_path_factory.mktemp("axis_order")
    out = {}
    for name, (axes, flip) in COPIES.items():
        image = save_nifti(permuted_copy(ct, axes, flip), root / name / "ct.nii.gz")
        mask = save_nifti(permuted_copy(seg, axes, flip), root / name / "seg.nii.gz")
        out[name] = Case("example", "p0", "ts", "CT", {"image": image}, mask=mask, split="train")
    assert load_volume(out["permuted"].image).shape == (30, 122, 101)
    return out


@pytest.fixture(scope="module")
def pools(copies):
    return {name: build_pool([case], "wide", thumb_size=32, progress=False)[0] for name, case in copies.items()}


def test_pool_and_reader_are_axial_whatever_the_axis_order(copies, pools):
    ref_pool = pools["stored"]
    assert len(ref_pool) == 30 and ref_pool.refs[12].slice_id == "example_z012"
    ct = load_volume(copies["stored"].image)
    readers = {name: SliceReader("soft_tissue", KIDNEYS) for name in copies}
    for name, pool in pools.items():
        assert len(pool) == len(ref_pool) and pool.ids == ref_pool.ids
        assert [r.index for r in pool.refs] == [r.index for r in ref_pool.refs]
        assert np.array_equal(pool.thumbs, ref_pool.thumbs), name
        for k in (0, 12, 29):
            img = readers[name].image(pool.refs[k])
            lab = readers[name].label(pool.refs[k])
            assert np.array_equal(img, readers["stored"].image(ref_pool.refs[k])), name
            assert np.array_equal(lab, readers["stored"].label(ref_pool.refs[k])), name
    # The file is stored RAS: its canonical axial slice k is its last-axis slice k.
    assert np.array_equal(readers["stored"].image(ref_pool.refs[12])[0] > 0, ct.array[:, :, 12] > -160)
    assert int((readers["permuted"].label(pools["permuted"].refs[12]) == 1).sum()) > 0  # kidney slice


def test_seeded_selection_and_export_match(copies, pools, tmp_path):
    metric = MetricConfig(device="cpu", seed=0)
    picks = {}
    for name, pool in pools.items():
        ctx = SelectionContext(n=len(pool), labelled=[3], features=feature_provider(pool, metric), seed=7, device="cpu")
        picks[name] = (get_strategy("coreset")(ctx, 4), get_strategy("random")(ctx, 4))
    assert picks["permuted"] == picks["stored"] == picks["permuted_flipped"]
    chosen = picks["stored"][0]
    exported = {}
    for name, pool in pools.items():
        export_slices([pool.refs[i] for i in chosen], tmp_path / name, "soft_tissue", progress=False)
        exported[name] = [load_volume(tmp_path / name / "images" / f"{pool.refs[i].slice_id}.nii.gz") for i in chosen]
    ct = load_volume(copies["stored"].image)
    for n, i in enumerate(chosen):
        first = exported["stored"][n]
        assert first.shape == (122, 101, 1) and first.array.dtype == np.int16
        assert np.array_equal(first.array[:, :, 0], ct.array[:, :, pools["stored"].refs[i].index])
        assert np.allclose(first.affine @ [40, 50, 0, 1], ct.affine @ [40, 50, pools["stored"].refs[i].index, 1])
        for name in ("permuted", "permuted_flipped"):
            assert np.array_equal(exported[name][n].array, first.array), name
            assert np.allclose(exported[name][n].affine, first.affine, atol=1e-6), name
    csv = (tmp_path / "permuted" / "selection.csv").read_text()
    assert "source_orientation" in csv and ",SRA," in csv


def test_ingest_against_a_permuted_volume_reads_minus_one_and_255_as_unlabelled(copies, pools, tmp_path):
    ref = pools["permuted_flipped"].refs[12]
    export_slices([ref], tmp_path / "exp", None, progress=False)
    img = load_volume(tmp_path / "exp" / "images" / "example_z012.nii.gz")
    truth = SliceReader(None, KIDNEYS).label(pools["stored"].refs[12])
    scribble = np.where(np.arange(122)[:, None] % 3 == 0, truth, IGNORE)  # every third row marked
    save_label_map(scribble[:, :, None], tmp_path / "ann" / "minus1" / "example_z012.nii.gz", img.affine)
    viewer = np.where(scribble < 0, 255, scribble).astype(np.uint8)
    save_nifti(Volume(viewer[:, :, None], img.affine), tmp_path / "ann" / "u8" / "example_z012_label.nii.gz")
    assert load_volume(tmp_path / "ann" / "minus1" / "example_z012.nii.gz").array.dtype == np.int16
    for folder in ("minus1", "u8"):
        accepted, rejected = scan_folder(tmp_path / "ann" / folder, {ref.slice_id: ref}, num_classes=2)
        assert not rejected and len(accepted) == 1, folder
        a = accepted[0]
        assert a.kind == "scribble" and np.array_equal(a.label, scribble) and (a.label == IGNORE).sum() > 0
        assert np.allclose(a.affine, img.affine)
    # A viewer that stored the slice flipped in-plane (same world geometry) is put back on the grid.
    flipped = permuted_copy(Volume(viewer[:, :, None], img.affine), (0, 1, 2), (0,))
    save_nifti(flipped, tmp_path / "ann" / "flipped" / "example_z012.nii.gz")
    got = read_annotation(tmp_path / "ann" / "flipped" / "example_z012.nii.gz", ref, num_classes=2)
    assert np.array_equal(got.label, scribble)


def test_annotation_on_the_wrong_grid_is_rejected_naming_the_file(copies, pools, tmp_path):
    ref = pools["permuted"].refs[12]
    export_slices([ref], tmp_path / "exp", None, progress=False)
    img = load_volume(tmp_path / "exp" / "images" / "example_z012.nii.gz")
    lab = np.zeros((122, 101, 1), np.int16)
    up = img.affine.copy()
    up[2, 3] += 3.0  # saved on the next slice up
    save_label_map(lab, tmp_path / "bad" / "example_z012_label.nii.gz", up)
    accepted, rejected = scan_folder(tmp_path / "bad", {ref.slice_id: ref}, num_classes=2)
    assert not accepted and len(rejected) == 1
    assert "bad/example_z012_label.nii.gz: geometry differs from the exported slice example_z012" in rejected[0]
    stored_order = load_volume(copies["permuted"].image).array[:, :, 0:1]  # the old, wrong "slice" of this file
    save_label_map(np.zeros(stored_order.shape, np.int16), tmp_path / "bad2" / "example_z012.nii.gz", img.affine)
    with pytest.raises(InvalidDataError, match=r"bad2/example_z012.nii.gz: shape \(30, 122, 1\) does not match"):
        read_annotation(tmp_path / "bad2" / "example_z012.nii.gz", ref, num_classes=2)
