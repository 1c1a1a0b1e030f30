"""Patient-level splits: train/val/test fractions, k folds, by site; seeded, stratified, leak-free.

Every split is made over *patients*, never cases, so no patient ever sits in two parts; the cases of
a patient follow it. A patient's label is the highest label of its cases, its site that of its
first case. Stratified splits cut each stratum (a label, a site, or a (site, label) pair) on its
own, so every part keeps the strata's proportions as far as the counts allow.

Sizes (`part_sizes`): val and test get ``round(fraction × n)`` patients each; a part with a
positive fraction gets at least one patient as soon as there are two, and at least one patient
always stays in train (with two patients: one train and one test; with one: train).

Randomness: patients are sorted by id, then permuted by a generator seeded by `seed` (or the
`numpy.random.Generator` passed instead), so the result depends on the seed and the set of
patients, not on the order of the manifest's rows.

To pick cases by split and site from a manifest use `Manifest.select`, which refuses an empty
selection instead of falling back to every case.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from medwss.data.manifest import SPLITS, Case
from medwss.errors import InvalidDataError

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLITS",
    "assign_patients",
    "kfold_cases",
    "kfold_patients",
    "leave_one_site_out",
    "part_sizes",
    "patient_strata",
    "split_cases",
]

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
"""Train, val and test fractions of `split_cases` and `assign_patients`."""

Seed = int | np.random.Generator
Stratify = Sequence[str]  # subset of ("site", "label"); empty: no stratification


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))


def part_sizes(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """(train, val, test) patient counts for `n` patients (rules in the module docstring).

    Raises:
        ValueError: Fractions that are not three non-negative numbers with a positive sum.
    """
    f = [float(v) for v in fractions]
    if len(f) != 3 or min(f) < 0 or sum(f) <= 0:
        raise ValueError(f"fractions must be three non-negative (train, val, test) values, got {tuple(fractions)}")
    total = sum(f)
    held = [round(f[1] / total * n), round(f[2] / total * n)]
    if n >= 2:
        held = [max(1, h) if f[i + 1] > 0 else h for i, h in enumerate(held)]
    while n > 0 and held[0] + held[1] > n - 1:  # keep one training patient; val gives way first
        if held[0] >= held[1]:
            held[0] -= 1
        else:
            held[1] -= 1
    held = [max(0, h) for h in held]
    return n - held[0] - held[1], held[0], held[1]


def _strata_of(patients: Iterable[str], strata: Mapping[str, Hashable] | None) -> list[list[str]]:
    """Sorted patient ids of each stratum, strata in sorted order of their keys."""
    ids = sorted(set(patients))
    if strata is None:
        return [ids]
    missing = [p for p in ids if p not in strata]
    if missing:
        raise ValueError(f"no stratum for patient(s) {', '.join(missing[:5])}")
    groups: dict[Hashable, list[str]] = {}
    for p in ids:
        groups.setdefault(strata[p], []).append(p)
    return [groups[k] for k in sorted(groups, key=repr)]


def assign_patients(
    patients: Iterable[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: Seed = 0,
    strata: Mapping[str, Hashable] | None = None,
) -> dict[str, str]:
    """Split name (``train``, ``val``, ``test``) of every patient.

    Args:
        patients: Patient ids (duplicates are ignored).
        fractions: Train, val and test fractions (normalised by their sum).
        seed: Seed of the shuffle, or a generator.
        strata: Stratum key of every patient; each stratum is split on its own (`part_sizes`).

    Returns:
        patient → split.
    """
    rng = _rng(seed)
    out: dict[str, str] = {}
    for ids in _strata_of(patients, strata):
        _, n_val, n_test = part_sizes(len(ids), fractions)
        for rank, j in enumerate(rng.permutation(len(ids))):
            out[ids[j]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def kfold_patients(
    patients: Iterable[str], k: int, seed: Seed = 0, strata: Mapping[str, Hashable] | None = None
) -> dict[str, int]:
    """Fold (0..k-1) of every patient: each patient in exactly one fold, fold sizes within one.

    Within each stratum the shuffled patients are dealt to the folds in turn, continuing where the
    previous stratum stopped, so both the strata and the fold sizes stay balanced.

    Raises:
        InvalidDataError: ``k < 2`` or fewer patients than folds.
    """
    rng = _rng(seed)
    groups = _strata_of(patients, strata)
    n = sum(len(g) for g in groups)
    if k < 2 or n < k:
        raise InvalidDataError(f"k-fold needs 2 <= k <= number of patients, got k = {k} for {n} patient(s)")
    out: dict[str, int] = {}
    turn = 0
    for ids in groups:
        for j in rng.permutation(len(ids)):
            out[ids[j]] = turn % k
            turn += 1
    return out


def patient_strata(cases: Iterable[Case], by: Stratify = ("label",)) -> dict[str, tuple[object, ...]]:
    """Stratum key of each patient: its site (first case) and/or its highest label (unlabelled: 0).

    Raises:
        ValueError: `by` names something other than ``site`` or ``label``.
    """
    unknown = [b for b in by if b not in ("site", "label")]
    if unknown:
        raise ValueError(f"can stratify by 'site' and 'label', not {', '.join(unknown)}")
    site: dict[str, str] = {}
    label: dict[str, int] = {}
    for c in cases:
        site.setdefault(c.patient_id, c.site)
        label[c.patient_id] = max(label.get(c.patient_id, 0), int(c.label or 0))
    return {p: tuple(site[p] if b == "site" else label[p] for b in by) for p in site}


def split_cases(
    cases: Sequence[Case],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: Seed = 0,
    stratify: Stratify = ("label",),
    sites: Sequence[str] | None = None,
) -> dict[str, str]:
    """Split of every case from a patient-level split (`assign_patients`).

    Args:
        cases: Manifest rows.
        fractions: Train, val and test fractions.
        seed: Seed of the shuffle, or a generator.
        stratify: Stratify by ``label``, ``site``, both, or nothing (``()``).
        sites: Training sites: only their patients (by the site of a patient's first case) are
            split, every other patient is ``test`` (train on some sites, test in-domain and on
            unseen sites). None: all sites.

    Returns:
        case_id → split; the cases of a patient share its split.

    Raises:
        InvalidDataError: A training site that no case has.
    """
    site_of: dict[str, str] = {}
    for c in cases:
        site_of.setdefault(c.patient_id, c.site)
    if sites is not None:
        present = {c.site for c in cases}
        unknown = [s for s in sites if s not in present]
        if unknown:
            raise InvalidDataError(f"site(s) {', '.join(unknown)} not among the cases' ({', '.join(sorted(present))})")
    inside = [c for c in cases if sites is None or site_of[c.patient_id] in sites]
    strata = patient_strata(inside, stratify) if stratify else None
    split_of = assign_patients((c.patient_id for c in inside), fractions, seed, strata)
    return {c.case_id: split_of.get(c.patient_id, "test") for c in cases}


def kfold_cases(cases: Sequence[Case], k: int, seed: Seed = 0, stratify: Stratify = ("label",)) -> list[list[Case]]:
    """The cases of each of `k` patient-level folds (`kfold_patients`); fold i validates on ``folds[i]``."""
    strata = patient_strata(cases, stratify) if stratify else None
    fold_of = kfold_patients((c.patient_id for c in cases), k, seed, strata)
    return [[c for c in cases if fold_of[c.patient_id] == f] for f in range(k)]


def leave_one_site_out(cases: Sequence[Case]) -> list[tuple[str, list[Case], list[Case]]]:
    """One ``(held-out site, training cases, test cases)`` per site, sites sorted.

    Raises:
        InvalidDataError: Fewer than two sites, or a patient seen at two sites (it would leak).
    """
    site_of: dict[str, str] = {}
    for c in cases:
        if site_of.setdefault(c.patient_id, c.site) != c.site:
            raise InvalidDataError(f"patient {c.patient_id} has cases at sites {site_of[c.patient_id]} and {c.site}")
    sites = sorted({c.site for c in cases})
    if len(sites) < 2:
        raise InvalidDataError(f"leave-one-site-out needs two sites or more, got {len(sites)}")
    return [(s, [c for c in cases if c.site != s], [c for c in cases if c.site == s]) for s in sites]


def cap_per_group(cases: Iterable[Case], max_per: int | None) -> list[Case]:
    """At most `max_per` cases per (site, split), in the given order (all of them when None).

    For benchmarks sized for a CPU: a subset that keeps every site and split represented.
    """
    cases = list(cases)
    if max_per is None:
        return cases
    seen: dict[tuple[str, str | None], int] = {}
    out = []
    for c in cases:
        key = (c.site, c.split)
        if seen.get(key, 0) < max_per:
            out.append(c)
            seen[key] = seen.get(key, 0) + 1
    return out
