"""Scribble-supervised brain-tumour segmentation across institutions on real LGG MRI: full, pCE, pCE + size, ensembles.

Usage:
    python benchmarks/scribble_lgg.py [--data DIR] [--quick] [--rotations CS,DU,HT] [--k 3] [--epochs N]
        [--max-train 10] [--max-val 3] [--max-out N] [--out DIR] [--work DIR]

Data: ``DIR/mri/lgg/manifest.csv`` (default DIR ``../shared/data/real``): 95 TCGA-LGG patients from
three institutions (CS 16, DU 45, HT 34), FLAIR + T1 pre/post on a 128 × 128 × S grid, a tumour
mask per patient, split train/val/test by patient within each institution (the manifest's ``split``).

Protocol (after Trombetta et al. 2024, on real data instead of their prostate setting): leave one
institution out. For every rotation the model trains on two institutions (``train`` patients; their
``val`` patients select the epoch on full masks) and is tested in-site on the ``test`` patients of
those two institutions and out-of-site on every patient of the third. Weak labels are circles inside
the tumour (`medwss.data.weak`, kind ``circle``: radius 0.6 × the inscribed radius at the deepest
point, on every tumour slice) plus the generator's background marks (a ring around the tumour and
random strokes), generated from the masks; a slice without a circle is known tumour-free. Settings =
the shipped configs ``configs/scribble_lgg_{full,pce,size}.yaml`` through the one workflow
(`medwss.scribble.workflow.train_model`, `class_probs`): a 2D MONAI UNet (8/16/32 channels) on every
axial slice of the three channels resized to 64 × 64:
- ``full``: the dense masks, CE + Dice;
- ``pce``: partial CE on the marked pixels (+ negative CE on unmarked slices);
- ``size``: ``pce`` + the size penalty (Kervadec et al.) with a tag prior of [30, 2000] stored pixels
  per scribbled slice (0.5 × 5th to 1.5 × 95th percentile of the training masks' slice areas; the
  same after rounding for every rotation) and [0, 0] on unmarked slices.
Each setting is trained ``--k`` times (seeds 0..k-1): "single" = the mean over members of each
patient's Dice, "ensemble" = the members' averaged probabilities. Dice is per patient in 3D on the
stored grid (probability >= 0.5). Tables: mean [95% bootstrap CI over patients]
(`medwss.eval.metrics.bootstrap_ci`); paired differences per patient: ensemble − single,
size − full, size − pce, and out-of-site − in-site on the ``test`` patients of each institution (each
is in-site in the two rotations that train on its institution, averaged, and out-of-site in the one
that leaves it out).

What was cut to fit a shared CPU (full run 641 s CPU, 32 min wall here; 3 rotations × 3 settings × 3 members =
27 trainings): 64 × 64 slices instead of 256 × 256, a 3-level UNet with 8/16/32 channels, 5 epochs,
no augmentation (it doubles the cost of a step here), at most ``--max-train`` (10) training and
``--max-val`` (3) validation patients per training institution (first in manifest order), ensembles
of 3. Nothing was tuned on the test patients: the settings were fixed from the training masks
(size prior) and a validation-split check on one rotation. ``--quick`` (smoke test): one rotation
(CS held out), 2 training / 1 validation / 1 in-site test patient per institution, 2 out-of-site
patients, 32 × 32, 4/8 channels, 1 epoch, ensembles of 2. Results:
benchmarks/results/scribble_lgg[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("full", "pce", "size")
SITES = ("CS", "DU", "HT")
NAMES = {
    "full": "full supervision (masks, CE + Dice)",
    "pce": "circle scribbles, partial CE",
    "size": "circle scribbles, partial CE + size (tag prior)",
}


def first_per_site(cases: Sequence[Any], sites: Sequence[str], split: str | None, n: int | None) -> list[Any]:
    """At most `n` cases of each site in `sites` (and of `split`, when given), in manifest order."""
    out = []
    for s in sites:
        rows = [c for c in cases if c.site == s and (split is None or c.split == split)]
        out += rows if n is None else rows[:n]
    return out


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def _cell(m: float | None, lo: float | None, hi: float | None, sign: bool = False) -> str:
    if m is None or not math.isfinite(m):
        return "n/a"
    f = "+.3f" if sign else ".3f"
    s = format(m, f)
    if lo is not None and hi is not None and _finite(lo) and _finite(hi):
        s += f" [{format(lo, f)}, {format(hi, f)}]"
    return s


def per_patient(rows: list[dict[str, Any]], setting: str, model: str, domain: str | None = None, **match: Any) -> dict:
    """Patient → Dice for one setting and model (``single``: mean over members; ``ensemble``),
    averaged over the rotations in which the patient falls in `domain` (None: any)."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        if r["setting"] != setting or (domain is not None and r["domain"] != domain):
            continue
        if any(r[k] != v for k, v in match.items()):
            continue
        is_member = r["model"].startswith("member_")
        if (model == "single") != is_member:
            continue
        acc.setdefault(f"{r['held_out']}|{r['patient_id']}", []).append(float(r["dice"]))
    per_rot = {k: float(np.mean(v)) for k, v in acc.items()}  # members averaged within a rotation
    out: dict[str, list[float]] = {}
    for k, v in per_rot.items():
        out.setdefault(k.split("|", 1)[1], []).append(v)
    return {p: float(np.mean(v)) for p, v in out.items()}


def summarise(rows: list[dict[str, Any]], rotations: Sequence[str], k: int) -> dict[str, Any]:
    """Per-rotation and per-site tables and the paired differences (see the module docstring)."""
    from medwss.eval.metrics import mean_ci, paired_mean_ci

    by_rotation = []
    for held in rotations:
        for setting in SETTINGS:
            for model in ("single", "ensemble"):
                row: dict[str, Any] = {"held_out": held, "setting": setting, "model": model}
                for domain in ("in_domain", "out_of_domain"):
                    vals = per_patient(rows, setting, model, domain, held_out=held)
                    m, lo, hi = mean_ci(list(vals.values()))
                    row |= {domain: m, f"{domain}_lo": lo, f"{domain}_hi": hi, f"n_{domain}": len(vals)}
                    if model == "single":  # spread of the members' domain means
                        means = [
                            np.mean([r["dice"] for r in rows if r["held_out"] == held and r["setting"] == setting
                                     and r["domain"] == domain and r["model"] == f"member_{i}"])
                            for i in range(k)
                            if any(r["model"] == f"member_{i}" and r["held_out"] == held for r in rows)
                        ]  # fmt: skip
                        row[f"{domain}_sd"] = float(np.std(means)) if len(means) > 1 else None
                if row["n_in_domain"] or row["n_out_of_domain"]:
                    by_rotation.append(row)
    by_site = []
    test_patients = {r["patient_id"] for r in rows if r["split"] == "test"}
    for site in SITES:
        for setting in SETTINGS:
            for model in ("single", "ensemble"):
                ins = per_patient(rows, setting, model, "in_domain", site=site)
                outs = per_patient(rows, setting, model, "out_of_domain", site=site)
                if not ins and not outs:
                    continue
                out_test = {p: v for p, v in outs.items() if p in test_patients}
                row = {"site": site, "setting": setting, "model": model}
                for key, vals in (("in_site", ins), ("out_of_site_test", out_test), ("out_of_site_all", outs)):
                    m, lo, hi = mean_ci(list(vals.values()))
                    row |= {key: m, f"{key}_lo": lo, f"{key}_hi": hi, f"n_{key}": len(vals)}
                m, lo, hi, n = paired_mean_ci(out_test, ins)
                row |= {"out_minus_in": m, "out_minus_in_lo": lo, "out_minus_in_hi": hi, "n_paired": n}
                by_site.append(row)
    diffs: dict[str, Any] = {}

    def add(name: str, a: dict[str, float], b: dict[str, float]) -> None:
        m, lo, hi, n = paired_mean_ci(a, b)
        if n:
            diffs[name] = {"mean": m, "lo": lo, "hi": hi, "n": n}

    for domain in ("in_domain", "out_of_domain"):
        for setting in SETTINGS:
            add(f"{setting}: ensemble − single, {domain}", per_patient(rows, setting, "ensemble", domain),
                per_patient(rows, setting, "single", domain))  # fmt: skip
        for model in ("single", "ensemble"):
            for a, b in (("size", "full"), ("pce", "full"), ("size", "pce")):
                add(f"{a} − {b} ({model}), {domain}", per_patient(rows, a, model, domain),
                    per_patient(rows, b, model, domain))  # fmt: skip
    for setting in SETTINGS:
        for model in ("single", "ensemble"):
            ins = per_patient(rows, setting, model, "in_domain")
            outs = {p: v for p, v in per_patient(rows, setting, model, "out_of_domain").items() if p in ins}
            add(f"{setting} ({model}): out-of-site − in-site, test patients", outs, ins)
    recovery = {}
    for setting in SETTINGS:
        ins = per_patient(rows, setting, "single", "in_domain")
        outs = {p: v for p, v in per_patient(rows, setting, "single", "out_of_domain").items() if p in ins}
        ens = {p: v for p, v in per_patient(rows, setting, "ensemble", "out_of_domain").items() if p in ins}
        if outs and ens:
            drop = float(np.mean([ins[p] for p in outs]) - np.mean(list(outs.values())))
            gain = float(np.mean([ens[p] for p in outs]) - np.mean(list(outs.values())))
            recovery[setting] = {"drop": drop, "ensemble_gain": gain, "fraction": gain / drop if drop > 0 else None}
    ratio = {}
    full_in = per_patient(rows, "full", "single", "in_domain")
    for a in ("size", "pce"):
        weak = per_patient(rows, a, "single", "in_domain")
        common = sorted(set(weak) & set(full_in))
        if common:
            ratio[f"{a}/full in-site (single)"] = float(
                np.mean([weak[p] for p in common]) / np.mean([full_in[p] for p in common])
            )
    return {"by_rotation": by_rotation, "by_site": by_site, "paired": diffs, "recovery": recovery, "ratio": ratio}


def run(args: argparse.Namespace, on_rotation: Any = None) -> dict[str, Any]:
    """Train, predict and score every rotation, setting and member; `on_rotation(record)` after each rotation."""
    import torch

    from medwss.config import load_config
    from medwss.data.manifest import load_manifest
    from medwss.eval.overlap import dice
    from medwss.io import load_volume
    from medwss.runinfo import versions
    from medwss.scribble.config import ScribbleConfig
    from medwss.scribble.mri_input import load_case, paste_back
    from medwss.scribble.workflow import class_probs, load_members, train_model

    torch.set_num_threads(1)
    src = Path(args.data) / "mri" / "lgg" / "manifest.csv"
    if not src.is_file():
        raise SystemExit(f"LGG manifest not found: {src} (give --data DIR holding mri/lgg/)")
    manifest = load_manifest(src)
    root = src.parent
    overrides: dict[str, Any] = {"device": "cpu"}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    k, max_train, max_val, max_test, max_out = args.k, args.max_train, args.max_val, None, args.max_out
    rotations = [s.strip() for s in args.rotations.split(",") if s.strip()]
    if args.quick:
        rotations, k, max_train, max_val, max_test, max_out = ["CS"], 2, 2, 1, 1, 2
        overrides |= {"epochs": 1, "slice_size": 32, "channels": (4, 8)}
    bad = [s for s in rotations if s not in {c.site for c in manifest.cases}]
    if bad:
        raise SystemExit(
            f"{src}: no site {', '.join(bad)} (sites: {', '.join(sorted({c.site for c in manifest.cases}))})"
        )
    cfgs = {
        name: load_config(ROOT / "configs" / f"scribble_lgg_{name}.yaml", ScribbleConfig).model_copy(update=overrides)
        for name in SETTINGS
    }
    work = Path(args.work or tempfile.mkdtemp(prefix="scribble_lgg_"))
    cache: dict[str, Any] = {}  # loaded training cases, shared by settings, members and rotations
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    counts: dict[str, Any] = {}
    t_all, cpu_all = time.time(), time.process_time()
    record: dict[str, Any] = {}
    for n_rot, held in enumerate(rotations):
        train_sites = [s for s in SITES if s != held]
        train = first_per_site(manifest.cases, train_sites, "train", max_train)
        val = first_per_site(manifest.cases, train_sites, "val", max_val)
        in_test = first_per_site(manifest.cases, train_sites, "test", max_test)
        out_test = first_per_site(manifest.cases, [held], None, max_out)
        counts[held] = {
            "train": len(train),
            "val": len(val),
            "in_site_test": len(in_test),
            "out_of_site": len(out_test),
        }
        ref = cfgs["size"]  # the three configs share the input settings
        inputs = {}
        for case in in_test + out_test:
            try:
                ci = load_case(case, ref.sequences, ref.crop_mm, ref.spacing_mm, root, ref.use_zones, ref.reference, 2)
                gt = load_volume(case.mask).array > 0 if case.mask is not None else None
                if gt is None:
                    raise ValueError("no mask")
                inputs[case.case_id] = (case, ci, gt)
            except (OSError, ValueError) as exc:  # one bad case is skipped and reported
                failures.append({"case_id": case.case_id, "error": str(exc)})
        domain = {c.case_id: "in_domain" for c in in_test} | {c.case_id: "out_of_domain" for c in out_test}
        for name, cfg in cfgs.items():
            ens: dict[str, np.ndarray] = {}
            for i in range(k):
                c = cfg.model_copy(update={"seed": i})
                out = work / f"holdout_{held}" / name / f"member_{i}"
                t0 = time.process_time()
                summary = train_model(manifest, c, out, train, val, progress=False, cache=cache)
                t_train = time.process_time() - t0
                member = load_members([out / "model.pt"])
                dices = []
                for cid, (case, ci, gt) in inputs.items():
                    prob = paste_back(class_probs(member, ci)[1], ci.grid, ci.reference)
                    ens[cid] = prob if cid not in ens else ens[cid] + prob
                    d = dice(prob >= 0.5, gt)
                    dices.append(d)
                    rows.append(_row(held, name, f"member_{i}", case, domain[cid], d))
                runs.append({"held_out": held, "setting": name, "member": i, "train_cpu_seconds": round(t_train, 1),
                             "best_val_dice": summary["best_val_dice"], "train_samples": summary["train_samples"],
                             "mean_test_dice": float(np.mean(dices)) if dices else float("nan")})  # fmt: skip
                bv = summary["best_val_dice"]
                print(f"hold-out {held} {name} member {i}: mean test Dice {runs[-1]['mean_test_dice']:.3f} "
                      f"(val {'n/a' if bv is None else f'{bv:.3f}'}, {t_train:.0f} s CPU)", flush=True)  # fmt: skip
            for cid, (case, _ci, gt) in inputs.items():
                rows.append(_row(held, name, "ensemble", case, domain[cid], dice(ens[cid] / k >= 0.5, gt)))
        done = rotations[: n_rot + 1]
        record = {
            "quick": args.quick, "data": str(src), "rotations": done, "rotations_planned": rotations, "k": k,
            "counts": counts, "configs": {n: c.model_dump(mode="json") for n, c in cfgs.items()},
            "limits": {"max_train_per_site": max_train, "max_val_per_site": max_val, "max_out": max_out},
            "runs": runs, "summary": summarise(rows, done, k), "per_case": rows, "failures": failures,
            "seconds": round(time.time() - t_all, 1), "cpu_seconds": round(time.process_time() - cpu_all, 1),
            "versions": versions(),
        }  # fmt: skip
        if on_rotation is not None:
            on_rotation(record)
    return record


def _row(held: str, setting: str, model: str, case: Any, domain: str, d: float) -> dict[str, Any]:
    return {"held_out": held, "setting": setting, "model": model, "case_id": case.case_id,
            "patient_id": case.patient_id, "site": case.site, "split": case.split, "domain": domain,
            "dice": float(d)}  # fmt: skip


def markdown(record: dict[str, Any]) -> str:
    s = record["summary"]
    k = record["k"]
    lines = [
        f"# LGG across institutions, circle scribbles ({'quick' if record['quick'] else 'full'} run)",
        "",
        f"Held-out institutions {record['rotations']} (of {record['rotations_planned']} planned); ensembles of {k}; "
        f"{record['cpu_seconds']:.0f} s CPU ({record['seconds']:.0f} s wall). Patients per rotation: "
        + "; ".join(
            f"{h}: train {c['train']}, val {c['val']}, in-site test {c['in_site_test']}, out-of-site {c['out_of_site']}"
            for h, c in record["counts"].items()
        )
        + ". Dice per patient (3D); mean [95% bootstrap CI over patients]; single = mean over the members "
        f"(± sd of the members' means), ensemble = averaged probabilities of the {k} members.",
        "",
        "## Per held-out institution",
        "",
        "| held out | setting | model | in-site Dice | out-of-site Dice |",
        "|---|---|---|---|---|",
    ]
    for r in s["by_rotation"]:
        cells = []
        for d in ("in_domain", "out_of_domain"):
            c = _cell(r[d], r[f"{d}_lo"], r[f"{d}_hi"])
            if r.get(f"{d}_sd") is not None and c != "n/a":
                c = c.replace(" [", f" ± {r[f'{d}_sd']:.3f} [", 1)
            cells.append(f"{c} (n={r[f'n_{d}']})")
        lines.append(f"| {r['held_out']} | {NAMES[r['setting']]} | {r['model']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per institution: in-site vs out-of-site",
        "",
        "In-site: the institution's test patients, in the rotations that train on it (averaged); out-of-site: "
        "the rotation that leaves it out, on the same test patients (paired) and on all its patients.",
        "",
        "| site | setting | model | in-site (test) | out-of-site (test) | out − in (paired) | out-of-site (all) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in s["by_site"]:
        lines.append(
            f"| {r['site']} | {r['setting']} | {r['model']} | {_cell(r['in_site'], r['in_site_lo'], r['in_site_hi'])} | "
            f"{_cell(r['out_of_site_test'], r['out_of_site_test_lo'], r['out_of_site_test_hi'])} (n={r['n_out_of_site_test']}) | "
            f"{_cell(r['out_minus_in'], r['out_minus_in_lo'], r['out_minus_in_hi'], sign=True)} (n={r['n_paired']}) | "
            f"{_cell(r['out_of_site_all'], r['out_of_site_all_lo'], r['out_of_site_all_hi'])} (n={r['n_out_of_site_all']}) |"
        )
    lines += ["", "## Paired differences (per patient, pooled over rotations; 95% CI over patients)", ""]
    for name, v in s["paired"].items():
        lines.append(f"- {name}: {_cell(v['mean'], v['lo'], v['hi'], sign=True)} (n={v['n']})")
    for name, v in s["ratio"].items():
        lines.append(f"- {name}: {v:.1%}")
    for name, v in s["recovery"].items():
        frac = "n/a" if v["fraction"] is None else f"{v['fraction']:.0%}"
        lines.append(
            f"- {name}: out-of-site drop of single models {v['drop']:+.3f}, ensemble gain out of site "
            f"{v['ensemble_gain']:+.3f} (recovers {frac} of the drop)"
        )
    lines += ["", "| held out | setting | member | mean test Dice | best val Dice | train samples | train CPU s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in record["runs"]:
        bv = r["best_val_dice"]
        lines.append(
            f"| {r['held_out']} | {r['setting']} | {r['member']} | {r['mean_test_dice']:.3f} | "
            f"{'n/a' if bv is None else f'{bv:.3f}'} | {r['train_samples']} | {r['train_cpu_seconds']:.0f} |"
        )
    if record["failures"]:
        lines += ["", "Skipped cases: " + "; ".join(f"{f['case_id']}: {f['error']}" for f in record["failures"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real"), help="folder holding mri/lgg/")
    ap.add_argument("--quick", action="store_true", help="smoke test: one rotation, a few patients, tiny network")
    ap.add_argument("--rotations", default=",".join(SITES), help="held-out institutions, in order (default CS,DU,HT)")
    ap.add_argument("--k", type=int, default=3, help="ensemble members per setting (seeds 0..k-1; default 3)")
    ap.add_argument("--epochs", type=int, help="override the configs' epochs")
    ap.add_argument("--max-train", type=int, default=10, help="training patients per training institution (default 10)")
    ap.add_argument("--max-val", type=int, default=3, help="validation patients per training institution (default 3)")
    ap.add_argument("--max-out", type=int, help="out-of-site patients per rotation (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    ap.add_argument("--work", help="work folder for models (default: a temporary folder)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from medwss.runinfo import write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "scribble_lgg_quick" if args.quick else "scribble_lgg"

    def save(record: dict[str, Any]) -> None:  # after every rotation: an interrupted run keeps its tables
        write_results(out, stem, record, markdown(record), echo=False)

    record = run(args, on_rotation=save)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
