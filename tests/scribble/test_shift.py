"""Domain splits, member averaging and the report's table and target checks (no training)."""

from __future__ import annotations

import numpy as np

from medwss.data.manifest import Case
from medwss.data.splits import split_cases
from medwss.scribble.report import results_markdown, targets
from medwss.scribble.shift import SHIFT_FRACTIONS, _mean_sd


def _cases(n_per_site: int = 10) -> list[Case]:
    out = []
    for s in ("site_a", "site_b", "site_c"):
        for i in range(n_per_site):
            out.append(Case(f"{s}_{i}", f"p_{s}_{i}", s, "MR", {"t2": f"{s}_{i}.nii.gz"}, label=i % 2))  # type: ignore[dict-item]
    return out


def domain_splits(cases: list[Case], sites: list[str], seed: int) -> dict[str, str]:
    return split_cases(cases, SHIFT_FRACTIONS, seed=seed, stratify=("site", "label"), sites=sites)


def test_domain_splits_stratified_and_unseen_site_is_test():
    cases = _cases()
    splits = domain_splits(cases, ["site_a", "site_b"], seed=0)
    assert all(splits[c.case_id] == "test" for c in cases if c.site == "site_c")
    for site in ("site_a", "site_b"):
        for label in (0, 1):
            got = [splits[c.case_id] for c in cases if c.site == site and c.label == label]
            assert got.count("train") == 2 or got.count("train") == 3  # round(0.5 * 5)
            assert got.count("val") == 1 and got.count("test") >= 1
    assert splits == domain_splits(cases, ["site_a", "site_b"], seed=0)
    assert splits != domain_splits(cases, ["site_a", "site_b"], seed=1)


def test_patients_never_span_splits():
    cases = _cases(4)
    twin = Case("site_a_0_b", cases[0].patient_id, "site_a", "MR", cases[0].images, label=0)
    splits = domain_splits([*cases, twin], ["site_a", "site_b"], seed=0)
    assert splits["site_a_0_b"] == splits[cases[0].case_id]


def test_mean_sd_over_members():
    a = [
        {
            "group": "in_domain",
            "n": 4,
            "n_pos": 2,
            "dice": 0.5,
            "dice_all": 0.6,
            "auroc": 1.0,
            "ap": 0.5,
            "ranking": 0.75,
        }
    ]
    b = [{**a[0], "dice": 0.7, "auroc": float("nan")}]
    (row,) = _mean_sd([a, b])
    assert np.isclose(row["dice"], 0.6) and np.isclose(row["dice_sd"], 0.1) and row["auroc"] == 1.0


def test_targets_and_markdown():
    def row(setting, model, group, dice):
        return {"setting": setting, "model": model, "group": group, "n": 10, "n_pos": 5, "dice": dice}

    results = [
        row("weak_size", "single (mean of 3)", "in_domain", 0.76),
        row("weak_size", "ensemble of 3", "out_of_domain", 0.6),
        row("weak_size", "single (mean of 3)", "out_of_domain", 0.55),
        row("weak_pce", "single (mean of 3)", "in_domain", 0.3),
        row("full", "single (mean of 3)", "in_domain", 0.8),
    ]
    t = targets(results, "weak_size", "weak_pce", "full")
    assert np.isclose(t["weak_over_full_in_domain"], 0.95) and t["weak_reaches_90pct_of_full"]
    assert t["size_above_partial_ce"] and t["ensemble_above_single_out_of_domain"]
    md = results_markdown(results)
    assert (
        md.count("\n") == 2 + len(results) and "| in_domain | weak_size | single (mean of 3) | 10 (5) | 0.760 |" in md
    )
