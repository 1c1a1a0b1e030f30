"""Mosaic slides from labelled tiles: splits kept apart, contiguous lesions, exact masks, readable slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medwss.data.manifest import load_manifest, write_manifest
from medwss.data.mosaic import GLASS_RGB, build_mosaics, cluster_cells, downsample_mask, read_layout
from medwss.errors import ConfigError, InvalidDataError
from medwss.io.slide import open_slide

T = 32  # tile side of the synthetic tiles
CLASSES = {0: ("Normal", "Polyp", "Low-grade IN"), 1: ("High-grade IN", "Adenocarcinoma")}


def _tiles(root: Path, rng: np.random.Generator, per_split: int = 12) -> Path:
    """A tile manifest like EBHI's: PNG tiles with masks, patients nested in splits, both labels in each."""
    rows = []
    for split in ("train", "val", "test"):
        for i in range(per_split):
            label = int(i % 3 == 0)
            cls = CLASSES[label][i % len(CLASSES[label])]
            cid = f"{split}_{i:02d}"
            colour = np.array([200, 80, 160]) if label else np.array([120, 90, 200])
            ramp = np.linspace(-40, 40, T)[:, None, None] * rng.choice([-1, 1], 3)  # smooth: JPEG keeps it
            img = np.clip(colour + ramp + rng.integers(-4, 5, (T, T, 3)), 0, 255).astype(np.uint8)
            img[: T // 4, : T // 4] = 255 - img[: T // 4, : T // 4]  # an asymmetric corner: orientation shows
            mask = np.zeros((T, T), bool)
            mask[rng.integers(0, T // 2) :, : rng.integers(T // 2, T)] = True
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(img).save(root / "images" / f"{cid}.png")
            Image.fromarray(mask).save(root / "masks" / f"{cid}.png")
            rows.append({"case_id": cid, "patient_id": f"{split}_p{i // 2}", "site": "ebhi", "modality": "WSI",
                         "image": root / "images" / f"{cid}.png", "mask": root / "masks" / f"{cid}.png",
                         "label": label, "split": split, "meta_class": cls})  # fmt: skip
    return write_manifest(rows, root / "manifest.csv")


@pytest.fixture
def tiles(tmp_path: Path, rng: np.random.Generator) -> Path:
    return _tiles(tmp_path / "tiles", rng)


def _build(tiles: Path, out: Path, **kw) -> Path:  # noqa: ANN003
    args = {"grid": (4, 5), "cluster": (3, 6), "lookalikes": (1, 2), "mask_downsample": 4, "progress": False}
    return build_mosaics(tiles, out, {"train": 4, "val": 2, "test": 4}, **{**args, **kw})


def _oriented(a: np.ndarray, rot90: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, rot90)
    return a[:, ::-1] if flip else a


def test_splits_keep_their_own_patients(tiles: Path, tmp_path: Path) -> None:
    m = load_manifest(_build(tiles, tmp_path / "mos"))
    source = {c.case_id: c for c in load_manifest(tiles)}
    patients: dict[str, set[str]] = {}
    for c in m:
        assert c.patient_id == c.case_id and c.modality == "WSI" and c.site == "ebhi"
        for p in read_layout(c.meta["layout"], m.path.parent):
            assert source[p.case_id].split == c.split  # tiles come from the slide's own split
            patients.setdefault(c.split, set()).add(p.patient_id)
    assert {c.split for c in m} == {"train", "val", "test"}
    assert [len(m.split(s)) for s in ("train", "val", "test")] == [4, 2, 4]
    for a in patients:
        for b in patients:
            assert a == b or not patients[a] & patients[b]
    assert sum(c.label for c in m.split("train")) == 2  # positive_fraction 0.5


def test_lesions_are_contiguous_clusters_and_lookalikes_isolated(tiles: Path, tmp_path: Path) -> None:
    m = load_manifest(_build(tiles, tmp_path / "mos"))
    for c in m:
        lay = read_layout(c.meta["layout"], m.path.parent)
        assert len(lay) == 20 and {(p.row, p.col) for p in lay} == {(r, q) for r in range(4) for q in range(5)}
        grid = np.zeros((4, 5), int)
        for p in lay:
            grid[p.row, p.col] = {"background": 0, "lesion": 1, "lookalike": 2}[p.role]
            assert p.label == (p.role == "lesion")
            assert (p.cls == "Low-grade IN") == (p.role == "lookalike")
        lesion = grid == 1
        assert int(c.meta["lesion_tiles"]) == lesion.sum()
        if c.label == 1:
            assert 3 <= lesion.sum() <= 6
            assert ndimage.label(lesion)[1] == 1  # one 4-connected cluster
        else:
            assert not lesion.any()
        look = grid == 2
        assert 1 <= look.sum() <= 2
        for r, q in zip(*np.nonzero(look), strict=True):
            others = (look | lesion).copy()
            others[r, q] = False
            assert not ndimage.binary_dilation(others, np.ones((3, 3)))[r, q]  # no 8-neighbour taken


def test_mask_and_pixels_match_the_placed_tiles(tiles: Path, tmp_path: Path) -> None:
    m = load_manifest(_build(tiles, tmp_path / "mos", quality=95))
    source = {c.case_id: c for c in load_manifest(tiles)}
    for c in m:
        margin, ds = int(c.meta["margin_tiles"]), int(c.meta["mask_downsample"])
        expected = np.zeros(((4 + 2 * margin) * T, (5 + 2 * margin) * T), bool)
        with open_slide(c.image) as s:
            assert s.dimensions == ((5 + 2 * margin) * T, (4 + 2 * margin) * T)
            assert s.mpp == pytest.approx(0.5)
            level0 = s.read_region((0, 0), 0, s.dimensions)
        for p in read_layout(c.meta["layout"], m.path.parent):
            src = source[p.case_id]
            img = _oriented(np.asarray(Image.open(src.image).convert("RGB")), p.rot90, p.flip)
            got = level0[p.y : p.y + T, p.x : p.x + T].astype(float)
            err = np.abs(got - img).mean()
            assert err < 8  # JPEG, quality 95
            assert err < np.abs(got - _oriented(img, 1, False)).mean()  # the recorded orientation is the one placed
            if p.role == "lesion":
                expected[p.y : p.y + T, p.x : p.x + T] = _oriented(
                    np.asarray(Image.open(src.mask)) > 0, p.rot90, p.flip
                )
        mask = np.asarray(Image.open(c.mask)) > 0
        assert mask.shape == (expected.shape[0] // ds, expected.shape[1] // ds)
        np.testing.assert_array_equal(mask, downsample_mask(expected, ds))
        assert mask.any() == (c.label == 1)
        glass = level0[: margin * T - 8].reshape(-1, 3).astype(float)  # blank glass (JPEG blurs the edge)
        assert np.abs(glass - GLASS_RGB).max() <= 4


def test_rebuild_is_identical_and_skips_finished_slides(tiles: Path, tmp_path: Path) -> None:
    first = _build(tiles, tmp_path / "mos")
    text = first.read_text()
    slide = tmp_path / "mos" / "slides" / "mosaic_test_000.tif"
    stamp = slide.stat().st_mtime_ns
    assert _build(tiles, tmp_path / "mos").read_text() == text
    assert slide.stat().st_mtime_ns == stamp
    other = _build(tiles, tmp_path / "mos2", seed=1)
    assert other.read_text().replace("mos2", "mos") != text


def test_one_bad_tile_is_reported_and_skipped(tiles: Path, tmp_path: Path) -> None:
    bad = next(p for p in (tiles.parent / "images").iterdir() if p.name.startswith("train_01"))
    bad.write_bytes(b"not a png")
    m = load_manifest(_build(tiles, tmp_path / "mos"))
    failures = (tmp_path / "mos" / "failures.csv").read_text()
    assert "train_01" in failures and len(m) == 10
    assert all(p.case_id != "train_01" for c in m for p in read_layout(c.meta["layout"], m.path.parent))


def test_single_split_and_errors(tiles: Path, tmp_path: Path) -> None:
    m = load_manifest(build_mosaics(tiles, tmp_path / "one", 3, grid=(3, 3), cluster=(2, 3), split="val",
                                    mask_downsample=4, progress=False))  # fmt: skip
    assert [c.split for c in m] == ["val"] * 3
    with pytest.raises(InvalidDataError, match="no labelled tiles in split 'other'"):
        build_mosaics(tiles, tmp_path / "x", 2, split="other", progress=False)
    with pytest.raises(ConfigError, match="cluster"):
        build_mosaics(tiles, tmp_path / "x", 2, grid=(2, 2), cluster=(3, 5), progress=False)
    with pytest.raises(ConfigError, match="mask_downsample"):
        build_mosaics(tiles, tmp_path / "x", 2, grid=(2, 2), cluster=(1, 2), mask_downsample=5, progress=False)
    with pytest.raises(ConfigError, match="positive_fraction"):
        build_mosaics(tiles, tmp_path / "x", 2, positive_fraction=1.5, progress=False)


def test_cluster_cells_are_connected_and_distinct() -> None:
    rng = np.random.default_rng(0)
    for size in (1, 5, 16):
        cells = cluster_cells(rng, (4, 4), size)
        grid = np.zeros((4, 4), bool)
        grid[tuple(np.array(cells).T)] = True
        assert len(set(cells)) == size == grid.sum() and ndimage.label(grid)[1] == 1
    with pytest.raises(ConfigError):
        cluster_cells(rng, (2, 2), 5)


@pytest.mark.slow  # decodes every EBHI tile (748 JPEGs): 3–13 s
def test_real_ebhi_mosaics(real: Path, tmp_path: Path) -> None:
    """Two slides per split from the real EBHI tiles: no patient in two splits, masks and slide size right."""
    src = real / "histo" / "ebhi" / "manifest.csv"
    if not src.exists():
        pytest.skip(f"EBHI tiles not found: {src}")
    m = load_manifest(build_mosaics(src, tmp_path / "mos", {"train": 2, "val": 2, "test": 2}, grid=(4, 4),
                                    cluster=(3, 5), lookalikes=(1, 2), progress=False))  # fmt: skip
    source = {c.case_id: c for c in load_manifest(src)}
    patients: dict[str, set[str]] = {}
    for c in m:
        lay = read_layout(c.meta["layout"], m.path.parent)
        patients.setdefault(c.split, set()).update(p.patient_id for p in lay)
        assert all(source[p.case_id].split == c.split for p in lay)
        with open_slide(c.image) as s:
            assert s.dimensions == (6 * 224, 6 * 224) and s.mpp == pytest.approx(0.5)
        mask = np.asarray(Image.open(c.mask)) > 0
        assert mask.shape == (6 * 224 // 8,) * 2
        lesion_cells = {(p.row + 1, p.col + 1) for p in lay if p.role == "lesion"}
        per_cell = mask.reshape(6, 28, 6, 28).any(axis=(1, 3))
        assert {tuple(rc) for rc in np.argwhere(per_cell)} <= lesion_cells
        assert per_cell.sum() >= len(lesion_cells) - 1  # EBHI masks cover 21–100% of a tile
        assert (c.label == 1) == bool(lesion_cells)
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
    assert not patients["val"] & patients["test"]
