"""Slide backend registry: every entry of `SLIDE_BACKENDS` opens a tiny slide and keeps the `SlideBackend`
contract (level geometry, read() shape/dtype/pixels, deterministic reads, close()); a new entry is picked up."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medwss.io.slide import (
    SLIDE_BACKENDS,
    SlideBackend,
    SlideBackendEntry,
    SlideFile,
    open_slide,
    register_slide_backend,
    slide_backends,
)
from medwss.io.tiff_writer import write_pyramid_tiff

sys.path.insert(0, str(Path(__file__).parent))
from wsi_fakes import write_dicom_wsi  # noqa: E402


def _image(h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


STOCK: dict[str, Callable[[Path], Path]] = {
    "tiled TIFF": lambda d: write_pyramid_tiff(
        _image(), d / "slide.tif", 0.5, tile=16, min_size=16, compression="zlib"
    ),
    "DICOM WSI": lambda d: write_dicom_wsi(d / "slide.dcm", _image(), mpp=0.5),
}
"""Lossless stock slides of `_image()`; a backend that names no `sample` must accept one of them."""


def sample_for(entry: SlideBackendEntry, folder: Path) -> tuple[Path, bool]:
    """A tiny slide `entry` reads: its own `sample`, else the first stock slide its probe takes (and whether stock)."""
    if entry.sample is not None:
        return entry.sample(folder), False
    for make in STOCK.values():
        path = make(folder)
        if entry.probe(SlideFile(path, path)):
            return path, True
    raise AssertionError(f"slide backend {entry.name!r} names no sample and takes none of {list(STOCK)}")


def check_backend_contract(entry: SlideBackendEntry, folder: Path) -> None:
    """The `SlideBackend` contract on a tiny slide of `entry`."""
    path, stock = sample_for(entry, folder)
    backend = entry.open(path)
    try:
        assert isinstance(backend, SlideBackend) and isinstance(backend.name, str) and backend.name
        dims, downs = backend.level_dimensions, backend.level_downsamples
        assert dims and len(dims) == len(downs) and downs[0] == pytest.approx(1.0)
        assert all(isinstance(v, int) and v > 0 for wh in dims for v in wh)
        assert dims[0] == max(dims) and list(downs) == sorted(downs)
        for level in (0, len(dims) - 1):
            w, h = min(dims[level][0], 20), min(dims[level][1], 12)
            a = backend.read(0, 0, level, w, h)
            assert a.shape == (h, w, 3) and a.dtype == np.uint8
            assert np.array_equal(a, backend.read(0, 0, level, w, h))
        if stock:  # lossless stock slide: level 0 holds the image's pixels
            assert dims[0] == (56, 40) and np.array_equal(backend.read(8, 4, 0, 20, 12), _image()[4:16, 8:28])
        assert backend.mpp is None or all(m > 0 for m in backend.mpp)
    finally:
        backend.close()


@pytest.mark.parametrize("name", SLIDE_BACKENDS.names())
def test_slide_backend_contract(name: str, tmp_path: Path) -> None:
    check_backend_contract(SLIDE_BACKENDS.get(name), tmp_path)


def test_backends_are_tried_in_priority_order() -> None:
    assert [e.name for e in slide_backends()][:3] == ["openslide", "tifffile", "dicom"]


class NpyBackend:
    """The README "Extending medwss" slide backend: an (H, W, 3) uint8 ``.npy`` as a one-level slide."""

    name, vendor, mpp, objective_power = "npy", None, None, None

    def __init__(self, path: Path) -> None:
        self.image = np.load(path, mmap_mode="r")
        self.level_dimensions, self.level_downsamples = [(self.image.shape[1], self.image.shape[0])], [1.0]
        self.properties: dict[str, str] = {}
        self.associated_names: list[str] = []

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), 255, np.uint8)  # white outside the image
        crop = self.image[y : y + height, x : x + width]
        out[: crop.shape[0], : crop.shape[1]] = crop
        return out

    def associated(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        pass


def _npy_sample(folder: Path) -> Path:
    np.save(folder / "slide.npy", _image())
    return folder / "slide.npy"


def test_a_new_backend_is_one_registration_and_the_contract_test_takes_it(tmp_path: Path) -> None:
    register_slide_backend("npy", probe=lambda f: f.target.suffix == ".npy", priority=40, sample=_npy_sample)(
        NpyBackend
    )
    try:
        assert "npy" in SLIDE_BACKENDS.names() and slide_backends()[-1].name == "npy"
        check_backend_contract(SLIDE_BACKENDS.get("npy"), tmp_path)
        with open_slide(_npy_sample(tmp_path), mpp=0.5) as slide:
            assert slide.reader == "npy" and slide.dimensions == (56, 40)
            assert np.array_equal(slide.read_region((50, 0), 0, (8, 2))[:, 6:], np.full((2, 2, 3), 255, np.uint8))
    finally:
        SLIDE_BACKENDS.unregister("npy")
    with pytest.raises(AssertionError, match="names no sample"):  # a backend must be testable
        check_backend_contract(SlideBackendEntry("x", NpyBackend, lambda f: False), tmp_path)
