"""Bags for training: grid inference for bags from other tools, patient-level splits and folds."""

from __future__ import annotations

import numpy as np

from medwss.data.manifest import Case, Manifest
from medwss.mil.data import infer_grid, kfold_splits, n_outputs, patient_split, target_of


def test_infer_grid_from_clam_like_coords():
    rows, cols = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
    coords = np.stack([1000 + cols.ravel() * 256, 500 + rows.ravel() * 256], 1)  # (x, y), step 256
    keep = np.arange(15) != 7  # a hole in the grid
    index, shape = infer_grid(coords[keep])
    assert shape == (3, 5)
    np.testing.assert_array_equal(index, np.stack([rows.ravel(), cols.ravel()], 1)[keep])


def _manifest(n_patients=20, per_patient=2, split=None) -> Manifest:
    cases = []
    for p in range(n_patients):
        for j in range(per_patient):
            cases.append(Case(f"c{p}_{j}", f"p{p}", "s", "WSI", {"image": None}, label=p % 2,  # type: ignore[dict-item]
                              split=split(p) if split else None))  # fmt: skip
    return Manifest(None, cases)


def test_patient_split_has_no_leakage_and_keeps_test():
    m = _manifest(split=lambda p: "test" if p >= 16 else None)
    s = patient_split(m, 0.25, seed=0)
    pats = {k: {c.patient_id for c in v} for k, v in s.items()}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"])
    assert pats["test"] == {f"p{p}" for p in range(16, 20)}
    assert {c.label for c in s["val"]} == {0, 1}  # stratified
    assert patient_split(m, 0.25, seed=0)["val"] == s["val"]  # seeded


def test_kfold_partitions_patients():
    m = _manifest()
    folds = kfold_splits(m, 4, seed=1)
    vals = [{c.patient_id for c in f["val"]} for f in folds]
    assert set().union(*vals) == {f"p{p}" for p in range(20)}
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1 :])
    for f in folds:
        assert not ({c.patient_id for c in f["train"]} & {c.patient_id for c in f["val"]})


def test_targets():
    assert n_outputs([0, 1, 1]) == 1 and n_outputs([0, 2, 1]) == 3
    assert target_of(1, 1).tolist() == [1.0] and target_of(2, 3).tolist() == [0.0, 0.0, 1.0]
