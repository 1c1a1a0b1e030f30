"""Patient-level splits: no leakage, sizes, k folds, by site, stratification, and `Manifest.select`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medwss.counterfactual.workflow import pick
from medwss.data.manifest import Case, Manifest
from medwss.data.splits import (
    assign_patients,
    cap_per_group,
    kfold_cases,
    kfold_patients,
    leave_one_site_out,
    part_sizes,
    patient_strata,
    split_cases,
)
from medwss.errors import InvalidDataError, ManifestError


def _cases(n_patients: int = 30, per_patient: int = 2, sites: tuple[str, ...] = ("a", "b", "c")) -> list[Case]:
    """Patients p00.. with two cases each, round-robin over sites; every third patient is positive."""
    out = []
    for p in range(n_patients):
        for j in range(per_patient):
            label = int(p % 3 == 0) if j == 0 else 0  # the patient's label is its highest
            out.append(Case(f"c{p:02d}_{j}", f"p{p:02d}", sites[p % len(sites)], "MR", {}, label=label))
    return out


def _patients_of(split_of: dict[str, str], cases: list[Case]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {}
    for c in cases:
        parts.setdefault(split_of[c.case_id], set()).add(c.patient_id)
    return parts


def _no_patient_in_two(split_of: dict[str, str], cases: list[Case]) -> None:
    per_patient: dict[str, set[str]] = {}
    for c in cases:
        per_patient.setdefault(c.patient_id, set()).add(split_of[c.case_id])
    assert all(len(s) == 1 for s in per_patient.values())


def test_part_sizes() -> None:
    assert part_sizes(10) == (6, 2, 2)
    assert part_sizes(4) == (2, 1, 1)
    assert part_sizes(3) == (1, 1, 1)
    assert part_sizes(2) == (1, 0, 1)
    assert part_sizes(1) == (1, 0, 0)
    assert part_sizes(0) == (0, 0, 0)
    assert part_sizes(10, (0.7, 0.3, 0.0)) == (7, 3, 0)  # a zero fraction stays empty
    assert part_sizes(2, (0.5, 0.5, 0.0)) == (1, 1, 0)
    with pytest.raises(ValueError, match="fractions"):
        part_sizes(5, (0.5, 0.5))


def test_split_cases_is_patient_level_seeded_and_sized() -> None:
    cases = _cases(30)
    split_of = split_cases(cases, (0.6, 0.2, 0.2), seed=3, stratify=())
    _no_patient_in_two(split_of, cases)
    sizes = {k: len(v) for k, v in _patients_of(split_of, cases).items()}
    assert sizes == {"train": 18, "val": 6, "test": 6}
    assert split_of == split_cases(list(reversed(cases)), (0.6, 0.2, 0.2), seed=3, stratify=())  # row order free
    assert split_of != split_cases(cases, (0.6, 0.2, 0.2), seed=4, stratify=())


def test_stratified_by_label_keeps_proportions() -> None:
    cases = _cases(30)  # 10 positive patients, 20 negative
    strata = patient_strata(cases)
    assert Counter(strata.values()) == {(1,): 10, (0,): 20}
    for seed in range(5):
        split_of = split_cases(cases, (0.6, 0.2, 0.2), seed=seed)
        _no_patient_in_two(split_of, cases)
        parts = _patients_of(split_of, cases)
        positives = {k: sum(strata[p] == (1,) for p in v) for k, v in parts.items()}
        assert positives == {"train": 6, "val": 2, "test": 2}


def test_assign_patients_with_strata_mapping() -> None:
    patients = [f"p{i}" for i in range(12)]
    strata = {p: i % 2 for i, p in enumerate(patients)}
    out = assign_patients(patients, (0.5, 0.25, 0.25), seed=0, strata=strata)
    for k in (0, 1):
        got = Counter(out[p] for p in patients if strata[p] == k)
        assert got == {"train": 2, "val": 2, "test": 2}  # round(1.5) = 2 each, the rest train
    with pytest.raises(ValueError, match="stratum"):
        assign_patients(patients, seed=0, strata={})


def test_kfold_covers_each_patient_once() -> None:
    cases = _cases(23)
    folds = kfold_cases(cases, 4, seed=1)
    pats = [{c.patient_id for c in f} for f in folds]
    assert set().union(*pats) == {c.patient_id for c in cases}
    assert sum(len(p) for p in pats) == 23  # disjoint
    assert max(map(len, pats)) - min(map(len, pats)) <= 1
    assert sum(len(f) for f in folds) == len(cases)  # every case of a patient in its fold
    strata = patient_strata(cases)
    pos = [sum(strata[p] == (1,) for p in f) for f in pats]
    assert max(pos) - min(pos) <= 1  # 8 positives over 4 folds
    assert kfold_patients([c.patient_id for c in cases], 4, seed=1) == kfold_patients(
        [c.patient_id for c in reversed(cases)], 4, seed=1
    )
    with pytest.raises(InvalidDataError, match="k-fold"):
        kfold_patients(["a", "b"], 3)


def test_by_site_train_sites_and_unseen_sites() -> None:
    cases = _cases(30)
    split_of = split_cases(cases, (0.5, 0.25, 0.25), seed=0, stratify=("site", "label"), sites=["a", "b"])
    _no_patient_in_two(split_of, cases)
    assert all(split_of[c.case_id] == "test" for c in cases if c.site == "c")
    for site in ("a", "b"):
        got = Counter(split_of[c.case_id] for c in cases if c.site == site)
        assert got["train"] > 0 and got["val"] > 0 and got["test"] > 0
    with pytest.raises(InvalidDataError, match="site"):
        split_cases(cases, sites=["nowhere"])


def test_leave_one_site_out() -> None:
    cases = _cases(9)
    folds = leave_one_site_out(cases)
    assert [s for s, _, _ in folds] == ["a", "b", "c"]
    for site, train, test in folds:
        assert {c.site for c in test} == {site} and site not in {c.site for c in train}
        assert len(train) + len(test) == len(cases)
    moved = [*cases, Case("x", cases[0].patient_id, "b", "MR", {}, label=0)]
    with pytest.raises(InvalidDataError, match="sites"):
        leave_one_site_out(moved)
    with pytest.raises(InvalidDataError, match="two sites"):
        leave_one_site_out(_cases(3, sites=("a",)))


def test_manifest_select_and_empty_selection_raises() -> None:
    cases = _cases(6)
    split_of = split_cases(cases, seed=0, stratify=())
    for c in cases:
        c.split = split_of[c.case_id]
    m = Manifest(None, cases)
    assert {c.split for c in m.select("train")} == {"train"}
    assert {c.split for c in m.select(["val", "test"])} == {"val", "test"}
    assert {c.site for c in m.select(sites=["a"])} == {"a"}
    assert len(m.select()) == len(cases)
    picked = m.select("test", sites=["a", "b"])
    assert picked and all(c.split == "test" and c.site in ("a", "b") for c in picked)
    unsplit = Manifest(None, _cases(4))
    with pytest.raises(ManifestError, match="no case in split val"):
        unsplit.select("val")
    with pytest.raises(ManifestError, match="site z"):
        m.select("train", sites=["z"])
    with pytest.raises(ManifestError, match="unknown split"):
        m.select("training")


def test_counterfactual_pick_refuses_a_missing_split() -> None:
    cases = _cases(4)
    assert pick(cases, "all") == cases and pick(cases, None) == cases
    with pytest.raises(ManifestError, match="'all'"):
        pick(cases, "train")
    cases[0].split = "train"
    assert pick(cases, "train") == [cases[0]]


def test_phantom_splits_go_through_splits() -> None:
    from medwss.data.phantoms.common import assign_splits

    patients = [f"p{i:02d}" for i in range(20)]
    out = assign_splits(patients, seed=0)
    assert Counter(out.values()) == {"train": 12, "val": 4, "test": 4}
    rng = np.random.default_rng(np.random.SeedSequence(entropy=0, spawn_key=(2,)))
    assert out == assign_patients(patients, (0.6, 0.2, 0.2), rng)


def test_cap_per_group_keeps_order_and_every_site():
    cases = _cases(12, 1)
    capped = cap_per_group(cases, 2)
    assert [c.case_id for c in capped] == [c.case_id for c in cases if c in capped]  # manifest order
    assert Counter(c.site for c in capped) == {"a": 2, "b": 2, "c": 2}
    assert cap_per_group(cases, None) == cases
