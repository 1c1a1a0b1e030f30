"""Stain normalisation on real H&E tiles: medwss's Macenko (`medwss.transforms.stain_norm`) against MONAI's `NormalizeHEStains`.

Usage:
    python benchmarks/stain_norm.py [--quick] [--data ../shared/data/real] [--tiles N]

On the EBHI-Seg tiles (224×224 JPEG, colorectal H&E; all 748 by default, 6 with --quick), both
normalisers get the same target (Macenko's reference H&E matrix and concentrations) and settings
(I0 = 240, alpha = 1, beta = 0.15). Reported: milliseconds per tile of each; their agreement
(mean absolute difference of the two outputs, grey levels); how often the two find the stains in
a different order (haematoxylin and eosin swapped: the cosine of the first columns is below that
of the crossed columns), and the mean absolute difference on the tiles where they agree on the
order; the spread of tile colour (standard deviation over tiles of each tile's mean RGB) before
and after normalisation (smaller: more uniform colour); and the self-normalisation error (a tile
normalised to its own stains, grey levels). Nothing is fitted or chosen here, so every split is used.
Results: benchmarks/results/stain_norm[_quick].json/.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _tiles(data: Path, n: int | None) -> list[np.ndarray]:
    import csv

    from PIL import Image

    root = data / "histo" / "ebhi"
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if n is not None:
        rows = rows[:: max(1, len(rows) // n)][:n]
    return [np.asarray(Image.open(root / r["image"]).convert("RGB")) for r in rows]


def run(data: Path, n: int | None) -> dict:
    from medwss.errors import InvalidDataError
    from medwss.transforms.stain_norm import MacenkoNormalizer, macenko_stains, monai_normalizer

    tiles = _tiles(data, n)
    own, monai = MacenkoNormalizer(), monai_normalizer()
    t_own = t_monai = 0.0
    diffs, agreed_diffs, outs_own, outs_monai, self_err = [], [], [], [], []
    swapped = monai_failed = 0
    from monai.apps.pathology.transforms.stain.array import ExtractHEStains

    extract = ExtractHEStains()
    for tile in tiles:
        t0 = time.perf_counter()
        a = own(tile)
        t_own += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            b = monai(tile)
        except ValueError:
            monai_failed += 1
            continue
        finally:
            t_monai += time.perf_counter() - t0
        d = float(np.abs(a.astype(np.int16) - b).mean())
        diffs.append(d)
        try:
            mine, theirs = macenko_stains(tile).matrix, extract(tile)
            theirs = theirs / np.linalg.norm(theirs, axis=0)
            straight = float(mine[:, 0] @ theirs[:, 0])
            crossed = float(mine[:, 0] @ theirs[:, 1])
            if crossed > straight:
                swapped += 1
            else:
                agreed_diffs.append(d)
            self_err.append(float(np.abs(MacenkoNormalizer(macenko_stains(tile))(tile).astype(np.int16) - tile).mean()))
        except (InvalidDataError, ValueError):
            pass
        outs_own.append(a.reshape(-1, 3).mean(0))
        outs_monai.append(b.reshape(-1, 3).mean(0))
    before = np.array([t.reshape(-1, 3).mean(0) for t in tiles])
    return {
        "tiles": len(tiles),
        "ms_per_tile": {"medwss_macenko": 1000 * t_own / len(tiles), "monai_normalize_he": 1000 * t_monai / len(tiles)},
        "mad_between_outputs": float(np.mean(diffs)) if diffs else None,
        "mad_between_outputs_same_order": float(np.mean(agreed_diffs)) if agreed_diffs else None,
        "he_order_swapped_fraction": swapped / max(len(diffs), 1),
        "monai_failed": monai_failed,
        "colour_spread_rgb": {
            "original": before.std(0).round(2).tolist(),
            "medwss_macenko": np.array(outs_own).std(0).round(2).tolist(),
            "monai_normalize_he": np.array(outs_monai).std(0).round(2).tolist(),
        },
        "self_normalisation_mad": float(np.mean(self_err)) if self_err else None,
    }


def to_markdown(r: dict) -> str:
    ms, sp = r["ms_per_tile"], r["colour_spread_rgb"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return (
        f"Stain normalisation on {r['tiles']} EBHI-Seg H&E tiles (224×224), same target and settings\n\n"
        "| | medwss Macenko | MONAI NormalizeHEStains |\n|---|---:|---:|\n"
        f"| ms per tile | {ms['medwss_macenko']:.1f} | {ms['monai_normalize_he']:.1f} |\n"
        f"| colour spread over tiles (std of mean R, G, B) | {sp['medwss_macenko']} | {sp['monai_normalize_he']} |\n\n"
        f"Original colour spread: {sp['original']}. Mean absolute difference between the two outputs: "
        f"{fmt(r['mad_between_outputs'])} grey levels ({fmt(r['mad_between_outputs_same_order'])} on the tiles "
        f"where both find H and E in the same order); H/E order swapped on "
        f"{r['he_order_swapped_fraction']:.0%} of tiles; MONAI failed on {r['monai_failed']}. "
        f"Self-normalisation error (medwss): {fmt(r['self_normalisation_mad'])} grey levels.\n"
    )


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 tiles, for the smoke test")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/real"))
    ap.add_argument("--tiles", type=int, default=None, help="use this many tiles (default all)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if not (args.data / "histo" / "ebhi" / "manifest.csv").exists():
        print(f"stain_norm: no EBHI tiles under {args.data}", file=sys.stderr)
        return 2
    res = run(args.data, 6 if args.quick else args.tiles)
    res["quick"] = args.quick
    write_results(args.out, "stain_norm_quick" if args.quick else "stain_norm", res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
