"""`Subject`: a manifest row loaded onto one canonical grid; results go back to the stored grid."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.labels import IGNORE
from medwss.data.manifest import load_manifest, write_manifest
from medwss.data.orientation import permuted_copy
from medwss.data.subject import load_subject
from medwss.errors import InvalidDataError
from medwss.io import load_volume, save_nifti


def test_acdc_case_with_scribble(real):
    m = load_manifest(real / "mri" / "acdc" / "manifest.csv")
    s = load_subject(m.cases[0], num_classes=4)
    assert s.label("mask").shape == s.image.shape
    scr = s.label("scribble")
    assert scr is not None and IGNORE in np.unique(scr)
    marked = scr != IGNORE
    # the scribbles agree with the dense label on all but ~0.1 % of their voxels (10 of 7,139 here)
    assert (scr[marked] == s.label("mask")[marked]).mean() > 0.99


def test_lgg_channels_stack(real):
    m = load_manifest(real / "mri" / "lgg" / "manifest.csv")
    s = load_subject(m.cases[0])
    stack = s.stack()
    assert stack.shape[0] == 3 and stack.shape[1:] == s.image.shape
    with pytest.raises(InvalidDataError, match="lacks channel"):
        s.stack(["t2"])


def test_permuted_case_gives_the_same_subject(real, tmp_path):
    image = load_volume(real / "volumes" / "example_ct_sm.nii.gz")
    seg = load_volume(real / "volumes" / "example_seg.nii.gz")
    rows = []
    for name, axes in (("orig", (0, 1, 2)), ("perm", (2, 0, 1))):
        save_nifti(permuted_copy(image, axes), tmp_path / f"{name}.nii.gz")
        save_nifti(permuted_copy(seg, axes), tmp_path / f"{name}_seg.nii.gz")
        rows.append(
            {
                "case_id": name,
                "patient_id": name,
                "site": "a",
                "modality": "CT",
                "image": tmp_path / f"{name}.nii.gz",
                "mask": tmp_path / f"{name}_seg.nii.gz",
            }
        )
    cases = load_manifest(write_manifest(rows, tmp_path / "m.csv")).cases
    a, b = load_subject(cases[0]), load_subject(cases[1])
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.label("mask"), b.label("mask"))
    out = b.to_source(b.label("mask"))
    assert out.shape == (30, 122, 101)
    assert np.allclose(out.affine, load_volume(tmp_path / "perm.nii.gz").affine)
