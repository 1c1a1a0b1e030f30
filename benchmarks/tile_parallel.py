"""Tiling in parallel processes: `tile_manifest(workers=1)` against `workers=2`, side by side in one run.

Usage:
    python benchmarks/tile_parallel.py [--quick] [--data ../shared/data/real] [--cases 32] [--repeats 2]

The cases are the real slide ``wsi/cmu-1-small-region.svs`` of ``--data`` listed `--cases` times under
different case ids (each tiled in full: tissue detection, tiles at 0.5 µm/px of 224 px, QA images);
the two settings alternate `--repeats` times, each into a fresh folder, and the outputs of the two
are compared byte for byte (``run.json`` aside). What was cut: a small slide repeated instead of a
cohort of large ones, so per-case work is ~1 s of CPU and the start of the worker processes (about
1.5 s of CPU each, importing the slide readers) weighs more than it would on real cohorts.

The machine's load average is recorded before and after each run: the CPU is shared, so wall-clock
ratios only mean something next to it. Results: benchmarks/results/tile_parallel[_quick].json/.md.
--quick: 2 cases, one repeat.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker processes), user and system."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def run(slide: Path, cases: int, repeats: int, work: Path) -> dict:
    from medwss.data.manifest import load_manifest
    from medwss.embed.tiling_job import TileConfig, tile_manifest

    m_path = work / "manifest.csv"
    rows = ["case_id,patient_id,site,modality,image", *(f"cmu{i:02d},p{i},s,WSI,{slide}" for i in range(cases))]
    m_path.write_text("\n".join(rows) + "\n")
    manifest = load_manifest(m_path)
    cfg = TileConfig()
    runs: list[dict] = []
    same = True
    for rep in range(repeats):
        outs = {}
        for workers in (1, 2):
            out = work / f"w{workers}_r{rep}"
            before = _load()
            cpu0 = _cpu()
            t0 = time.perf_counter()
            stats = tile_manifest(manifest, out, cfg, progress=False, workers=workers)
            wall = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            runs.append({"repeat": rep, "workers": workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "done": stats["done"], "tiles": stats["tiles"], "load_before": before,
                         "load_after": _load()})  # fmt: skip
            outs[workers] = _outputs(out)
        same = same and outs[1] == outs[2]
        for workers in (1, 2):
            shutil.rmtree(work / f"w{workers}_r{rep}", ignore_errors=True)
    w1 = statistics.median(r["wall_s"] for r in runs if r["workers"] == 1)
    w2 = statistics.median(r["wall_s"] for r in runs if r["workers"] == 2)
    return {
        "slide": str(slide),
        "cases": cases,
        "repeats": repeats,
        "runs": runs,
        "median_wall_s": {"workers_1": w1, "workers_2": w2},
        "speedup_2_over_1": round(w1 / w2, 2) if w2 > 0 else None,
        "same_bytes": same,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def markdown(res: dict) -> str:
    lines = [
        f"# Tiling with 1 vs 2 worker processes ({res['cases']} cases of {Path(res['slide']).name}, "
        f"{res['repeats']} repeat(s), {res['cpu_count']} CPUs)",
        "",
        "| repeat | workers | wall s | CPU s (all processes) | tiles | load average before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['repeat']} | {r['workers']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['tiles']} | "
            f"{' '.join(map(str, r['load_before']))} | {' '.join(map(str, r['load_after']))} |"
        )
    med = res["median_wall_s"]
    lines += [
        "",
        f"Median wall: {med['workers_1']:.1f} s (1 worker), {med['workers_2']:.1f} s (2 workers): "
        f"speed-up {res['speedup_2_over_1']}x; outputs byte-identical: {res['same_bytes']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 cases, one repeat (the smoke test)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/real"), help="real data folder")
    ap.add_argument("--cases", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    slide = (args.data / "wsi" / "cmu-1-small-region.svs").resolve()
    if not slide.is_file():
        print(f"tile_parallel: {slide} not found; nothing measured")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        res = run(slide, 2 if args.quick else args.cases, 1 if args.quick else args.repeats, Path(tmp))
    res["quick"] = args.quick
    write_results(args.out, "tile_parallel_quick" if args.quick else "tile_parallel", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
