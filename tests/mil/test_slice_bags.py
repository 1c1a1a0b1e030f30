"""Slice bags from volumes: slice choice, tiles and grid, encoded bags, pixel heatmaps, failures."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medwss.data.manifest import Case
from medwss.embed.encoders import create_encoder
from medwss.mil.registry import create_aggregator
from medwss.mil.slice_bags import (
    build_slice_bags,
    choose_slices,
    foreground,
    load_case_slices,
    pixel_heatmap,
    slice_tiles,
)

torch.set_num_threads(1)


def _case(tmp: Path, name: str = "c1", s: int = 6) -> Case:
    """A 32×32×s uint8 two-channel case: brain disc in slices 1..s-2, a bright tumour square in slices 2..3."""
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 14**2
    img = np.zeros((32, 32, s), np.uint8)
    img[..., 1 : s - 1] = np.where(disc, 80, 3)[..., None]
    mask = np.zeros((32, 32, s), np.uint8)
    mask[8:16, 8:16, 2:4] = 1
    img[mask > 0] = 220
    paths = {}
    for ch, arr in (("flair", img), ("t1", img // 2), ("mask", mask)):
        paths[ch] = tmp / f"{name}_{ch}.nii.gz"
        nib.save(nib.Nifti1Image(arr, np.eye(4)), paths[ch])
    return Case(name, name, "A", "MR", {"flair": paths["flair"], "t1": paths["t1"]}, 1, paths["mask"], split="train")


def test_load_case_slices_scales_and_stacks(tmp_path):
    d = load_case_slices(_case(tmp_path))
    assert d.image.shape == (2, 32, 32, 6) and d.image.dtype == np.float32
    assert d.image.max() == pytest.approx(220 / 255) and d.mask is not None and d.mask.sum() == 128


def test_choose_slices_keeps_positives_and_balances(tmp_path):
    d = load_case_slices(_case(tmp_path))
    fg = foreground(d.image)
    idx, y = choose_slices(d.mask, fg, np.random.default_rng(0))
    # slices 0 and 5 hold no brain and are skipped; positives 2, 3; two of the negatives 1, 4
    assert idx.tolist() == [1, 2, 3, 4] and y.tolist() == [0, 1, 1, 0]
    idx, y = choose_slices(d.mask, fg, np.random.default_rng(0), negatives_per_positive=0.5)
    assert y.sum() == 2 and len(y) == 3
    idx, y = choose_slices(None, fg, np.random.default_rng(0), min_negatives=3)
    assert y.sum() == 0 and len(idx) == 3 and set(idx.tolist()) <= {1, 2, 3, 4}


def test_slice_tiles_grid_and_coords():
    img = np.zeros((1, 32, 40), np.float32)
    fg = np.zeros((32, 40), bool)
    fg[8:16, 16:24] = True  # exactly tile (1, 2) of the 4×5 grid of 8-px tiles
    img[0, 8:16, 16:24] = 0.5
    st = slice_tiles(img, fg, 8, min_foreground=0.5)
    assert st.grid_shape == (4, 5) and st.grid_index.tolist() == [[1, 2]]
    assert st.coords.tolist() == [[16, 8]]  # (x, y)
    assert st.tiles.shape == (1, 1, 8, 8) and float(st.tiles.mean()) == 0.5
    with pytest.raises(ValueError, match="larger than the slice"):
        slice_tiles(img, fg, 64)


def test_build_slice_bags_trains_an_aggregator_and_reports_failures(tmp_path):
    good = _case(tmp_path)
    bad = Case("bad", "bad", "A", "MR", {"flair": tmp_path / "missing.nii.gz"}, 1, None, split="train")
    bags, failures = build_slice_bags([good, bad], create_encoder("stats", 2, 2), tile=8)
    assert [f["case_id"] for f in failures] == ["bad"] and "missing.nii.gz" in failures[0]["error"]
    assert [b.item.case.case_id for b in bags] == ["c1_z001", "c1_z002", "c1_z003", "c1_z004"]
    assert [int(b.item.target[0]) for b in bags] == [0, 1, 1, 0]
    b = bags[1]
    assert b.item.case.meta["slice"] == "2" and b.item.case.meta["volume"] == "c1" and b.item.case.patient_id == "c1"
    assert b.item.bag.grid_shape == (4, 4) and b.item.bag.features.shape == (len(b.item.bag), 52)
    assert b.mask is not None and b.mask.sum() == 64 and b.tile_means is not None and b.tile_means.shape[1] == 2
    out = create_aggregator("insight", 52, 1)(b.item.bag)
    assert out.dense is not None and tuple(out.dense.shape) == (1, 4, 4) and out.scores.shape == (len(b.item.bag), 1)


def test_pixel_heatmap_paints_tiles():
    hm = pixel_heatmap(np.array([0.25, 1.0]), np.array([[0, 1], [1, 0]]), 4, (10, 9))
    assert hm.shape == (10, 9)
    assert hm[0:4, 4:8].min() == 0.25 and hm[4:8, 0:4].min() == 1.0
    assert hm.sum() == pytest.approx(16 * 1.25)  # nothing in the border narrower than a tile


def test_real_lgg_case_slices(real):
    from medwss.data.manifest import load_manifest

    m = load_manifest(real / "mri" / "lgg" / "manifest.csv")
    case = next(c for c in m.cases if c.case_id == "TCGA_CS_4941")
    bags, failures = build_slice_bags([case], create_encoder("stats", 2, 3), tile=16)
    assert not failures
    y = np.array([int(b.item.target[0]) for b in bags])
    assert y.sum() == int(case.meta["tumour_slices"]) and (y == 0).sum() == y.sum()  # balanced
    assert all(b.item.bag.grid_shape == (8, 8) and 0 < len(b.item.bag) <= 64 for b in bags)
    assert all((b.mask is not None and b.mask.any()) == bool(t) for b, t in zip(bags, y, strict=True))
