"""RGB tiles with image-level tags (EBHI-style) → one-slice NIfTI volumes and a pseudo-label manifest.

`medwss pseudo` reads volumes (`medwss.data.subject.load_subject`); a manifest of JPEG/PNG tiles
with a ``label`` column (the image-level tag) and a ``mask`` column is turned into one where every
tile is a ``(size, size, 1)`` volume of one channel (``grey`` luminance or the ``hematoxylin``
optical density of colour deconvolution, both scaled to 0..255) and every mask a label volume whose
foreground carries the tile's tag: ``1 + label`` (so 1 = benign region, 2 = malignant region with
EBHI's ``label`` 0/1). The image-level tags the CAM methods read (`slice_tags`) are then exactly the
tile's tag plus background. A tile that fails to load is skipped and reported.

Example (the manifest one-liner behind ``configs/pseudo_ebhi_*.yaml``):
    python -m medwss.pseudo.tiles ../shared/data/real/histo/ebhi/manifest.csv runs/ebhi_tiles --size 64
    medwss pseudo cam runs/ebhi_tiles/manifest.csv --out runs/ebhi_cam --config configs/pseudo_ebhi_cam.yaml
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

Channel = Literal["grey", "hematoxylin"]


def tile_channel(rgb: np.ndarray, channel: Channel = "grey") -> np.ndarray:
    """(H, W, 3) uint8 → (H, W) float32 in 0..255: luminance, or hematoxylin optical density (dark = low)."""
    x = np.asarray(rgb, dtype=np.float32)
    if channel == "grey":
        return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).astype(np.float32)
    from skimage.color import rgb2hed

    h = rgb2hed(np.clip(x / 255.0, 0, 1))[..., 0]
    lo, hi = -0.05, 0.25  # a fixed range (not per tile), so intensities compare across tiles
    return (255.0 * (1.0 - np.clip((h - lo) / (hi - lo), 0, 1))).astype(np.float32)  # nuclei dark, as in grey


def read_tile(path: str | Path, size: int, mask: bool = False) -> np.ndarray:
    """A tile resized to ``size × size`` (area average; masks: area share > 0.5)."""
    from PIL import Image

    from medwss.pseudo.frames import area_resize, binary_resize

    with Image.open(path) as im:
        if mask:
            return binary_resize(np.asarray(im.convert("L")) > 0, (size, size)) > 0
        return area_resize(np.asarray(im.convert("RGB")), (size, size))


def tiles_to_volumes(
    manifest: str | Path,
    out: str | Path,
    size: int = 64,
    channel: Channel = "grey",
    splits: Sequence[str] | None = None,
    max_per_split: int | None = None,
) -> tuple[Path, list[str]]:
    """Write ``out/images/<case>.nii.gz``, ``out/masks/<case>.nii.gz`` and ``out/manifest.csv``.

    Args:
        manifest: A tile manifest with ``image``, ``label`` (0/1 tag) and optionally ``mask``.
        out: Output folder.
        size: Side of the written tiles.
        channel: ``grey`` or ``hematoxylin`` (`tile_channel`).
        splits: Keep only these splits (None: all).
        max_per_split: Keep the first this many tiles of each split (None: all), e.g. for a smoke test.

    Returns:
        The new manifest's path and ``"case_id: reason"`` for every tile skipped.
    """
    from medwss.data.manifest import load_manifest, write_manifest
    from medwss.io.volumes import save_nifti

    src = load_manifest(manifest)
    out = Path(out)
    rows: list[dict[str, object]] = []
    failed: list[str] = []
    affine = np.eye(4)
    taken: dict[str | None, int] = {}
    for case in src:
        if splits is not None and case.split not in splits:
            continue
        if max_per_split is not None and taken.get(case.split, 0) >= max_per_split:
            continue
        taken[case.split] = taken.get(case.split, 0) + 1
        if case.label is None:
            failed.append(f"{case.case_id}: no label (image-level tag) in {src.path}")
            continue
        try:
            img = tile_channel(read_tile(case.image, size), channel)
            img_path = save_nifti(
                np.round(img).astype(np.uint8)[:, :, None], out / "images" / f"{case.case_id}.nii.gz", affine
            )
            row: dict[str, object] = {
                "case_id": case.case_id, "patient_id": case.patient_id, "site": case.site, "modality": "OT",
                "image": img_path, "label": int(case.label), "split": case.split or "",
            }  # fmt: skip
            if case.mask is not None:
                m = read_tile(case.mask, size, mask=True).astype(np.int16) * (1 + int(case.label))
                row["mask"] = save_nifti(m[:, :, None], out / "masks" / f"{case.case_id}.nii.gz", affine)
            row |= {f"meta_{k}": v for k, v in case.meta.items()}
        except (OSError, ValueError) as exc:
            failed.append(f"{case.case_id}: {case.image}: {exc}")
            continue
        rows.append(row)
    return write_manifest(rows, out / "manifest.csv"), failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="tile manifest → one-slice volumes for medwss pseudo")
    ap.add_argument("manifest", help="tile manifest (image, mask, label columns)")
    ap.add_argument("out", help="output folder (manifest.csv, images/, masks/)")
    ap.add_argument("--size", type=int, default=64, help="tile side written (default 64)")
    ap.add_argument("--channel", choices=("grey", "hematoxylin"), default="grey")
    args = ap.parse_args(argv)
    path, failed = tiles_to_volumes(args.manifest, args.out, args.size, args.channel)
    for f in failed:
        print(f"skipped {f}")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
