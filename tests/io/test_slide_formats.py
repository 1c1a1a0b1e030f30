"""Every slide format: each real file read or refused in one line, DICOM WSI (one file, a folder of
instances; wsidicom and pydicom), multiplex QPTIFF read as channels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from medwss.errors import CorruptFileError, MedwssError, UnsupportedFormatError
from medwss.io.slide import Slide, open_slide, resolve_channel
from medwss.io.slide_dicom import PydicomWsiBackend, WsiDicomBackend
from medwss.io.tiff_writer import downsample2

sys.path.insert(0, str(Path(__file__).parent))
from wsi_fakes import QPI_CHANNELS, fluorescence_image, write_dicom_wsi, write_qptiff  # noqa: E402

REAL_WSI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "wsi"
# What each real file does (the formats table of README "Tiles and embeddings"): levels it opens with, or the refusal.
EXPECTED: dict[str, tuple[str, object]] = {
    "cmu-1-small-region.svs": ("read", [(2220, 2967)]),
    "small.svs": ("read", [(16, 16)]),
    "boxes.tiff": ("read", [(300, 250), (150, 125), (75, 62), (37, 31)]),
    "boxes_0.dcm": ("read", [(16, 16)]),
    "boxes_1.dcm": ("read", [(16, 16)]),
    "unreadable.svs": ("region", CorruptFileError),  # opens; reading its pixels fails
    "unopenable.tiff": ("refused", UnsupportedFormatError),
    "broken.svs": ("refused", CorruptFileError),
    "boxes.png": ("refused", UnsupportedFormatError),
}


def _real_files() -> list[str]:
    return sorted(f.name for f in REAL_WSI.iterdir() if f.is_file()) if REAL_WSI.is_dir() else []


def _wsidicom_or_skip() -> None:
    pytest.importorskip("wsidicom")


@pytest.mark.parametrize("name", _real_files() or ["(no real folder)"])
def test_every_real_slide_is_read_or_refused_in_one_line(name: str) -> None:
    if not REAL_WSI.is_dir():
        pytest.skip("../shared/data/real/wsi is absent")
    path = REAL_WSI / name
    kind, detail = EXPECTED.get(name, ("any", None))
    try:
        slide = open_slide(path)
    except MedwssError as exc:  # refused: one line, naming the file
        assert kind in ("refused", "any"), f"{name} should open, got {exc}"
        assert "\n" not in str(exc) and name in str(exc)
        if kind == "refused":
            assert isinstance(exc, detail)  # type: ignore[arg-type]
        return
    assert kind in ("read", "region", "any"), f"{name} should be refused"
    with slide:
        if kind == "read":
            assert slide.level_dimensions == detail
        w, h = slide.level_dimensions[-1]
        try:
            region = slide.read_region((0, 0), slide.level_count - 1, (min(w, 32), min(h, 32)))
        except MedwssError as exc:
            assert kind in ("region", "any") and "\n" not in str(exc) and name in str(exc)
            if kind == "region":
                assert isinstance(exc, detail)  # type: ignore[arg-type]
            return
        assert kind != "region" and region.shape == (min(h, 32), min(w, 32), 3) and region.dtype == np.uint8


def _image(h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_single_file_dicom_that_openslide_refuses_opens(tmp_path: Path) -> None:
    import openslide

    path = write_dicom_wsi(tmp_path / "slide.dcm", _image(), mpp=0.25)  # ImageType without the "flavor"
    with pytest.raises(openslide.OpenSlideError, match="flavor"):
        openslide.OpenSlide(str(path))
    with open_slide(path) as s:
        assert s.reader == "pydicom-wsi" and s.level_dimensions == [(56, 40)] and s.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(s.read_region((0, 0), 0, (56, 40)), _image())
        region = s.read_region((13, 9), 0, (20, 17))  # crosses tile borders
        np.testing.assert_array_equal(region, _image()[9:26, 13:33])
        edge = s.read_region((50, 30), 0, (10, 12))  # sticks out: white beyond the image
        np.testing.assert_array_equal(edge[:10, :6], _image()[30:40, 50:56])
        assert (edge[10:] == 255).all() and (edge[:, 6:] == 255).all()


def test_sparse_tiled_dicom_places_frames_by_position(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "sparse.dcm", _image(), sparse=True)
    s = Slide(PydicomWsiBackend(path), path)
    np.testing.assert_array_equal(s.read_region((0, 0), 0, (56, 40)), _image())


@pytest.mark.parametrize("backend", [PydicomWsiBackend, WsiDicomBackend])
def test_multi_file_dicom_folder_is_one_pyramid(tmp_path: Path, backend) -> None:  # noqa: ANN001
    if backend is WsiDicomBackend:
        _wsidicom_or_skip()
    from pydicom.uid import generate_uid

    uid, image = generate_uid(), _image()
    write_dicom_wsi(tmp_path / "l0.dcm", image, image_type=("ORIGINAL", "PRIMARY", "VOLUME", "NONE"), series=uid)
    write_dicom_wsi(tmp_path / "l1.dcm", downsample2(image), image_type=("DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"),
                    series=uid, mpp=0.5)  # fmt: skip
    s = Slide(backend(tmp_path), tmp_path)
    assert s.level_dimensions == [(56, 40), (28, 20)] and s.level_downsamples == [1.0, 2.0]
    assert s.mpp == pytest.approx(0.25)
    np.testing.assert_array_equal(s.read_region((8, 6), 1, (10, 7)), downsample2(image)[3:10, 4:14])
    with open_slide(tmp_path) as opened:  # the folder through open_slide (OpenSlide reads this one)
        assert opened.level_dimensions == s.level_dimensions


@pytest.mark.parametrize("backend", [PydicomWsiBackend, WsiDicomBackend])
def test_real_dicom_instances_match_pydicom_pixels(backend) -> None:  # noqa: ANN001
    if not REAL_WSI.is_dir():
        pytest.skip("../shared/data/real/wsi is absent")
    if backend is WsiDicomBackend:
        _wsidicom_or_skip()
    from pydicom.pixels import pixel_array

    path = REAL_WSI / "boxes_0.dcm"
    s = Slide(backend(path), path)
    assert s.level_dimensions == [(16, 16)] and s.mpp == pytest.approx(0.499)
    direct = pixel_array(str(path), index=0)  # frame 1 is the whole 16×16 level in a 64×64 tile
    np.testing.assert_array_equal(s.read_region((3, 2), 0, (10, 9)), direct[2:11, 3:13])
    with open_slide(path) as via_openslide:
        np.testing.assert_array_equal(
            s.read_region((0, 0), 0, (16, 16)), via_openslide.read_region((0, 0), 0, (16, 16))
        )


def test_dicom_without_levels_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "label.dcm", _image(), image_type=("ORIGINAL", "PRIMARY", "LABEL", "NONE"))
    with pytest.raises(UnsupportedFormatError, match="label.dcm") as err:
        open_slide(path)
    assert "\n" not in str(err.value)


def test_qptiff_reads_channels_not_grey(tmp_path: Path) -> None:
    planes = fluorescence_image(128, 160)
    path = write_qptiff(tmp_path / "multiplex.qptiff", planes, mpp=0.5)
    with open_slide(path) as s:
        assert s.reader == "tifffile" and s.vendor == "qptiff" and s.is_fluorescence
        assert s.channel_names == list(QPI_CHANNELS) and s.channels == [0, 1, 2]
        assert s.mpp == pytest.approx(0.5) and s.level_dimensions == [(160, 128), (80, 64)]
        region = s.read_channels((10, 20), 0, (30, 25))
        assert region.dtype == np.uint16
        np.testing.assert_array_equal(region, planes[:, 20:45, 10:40].transpose(1, 2, 0))
        rgb = s.read_region((0, 0), 0, (160, 128))  # three channels as three planes, not one grey
        assert rgb.shape == (128, 160, 3) and not np.array_equal(rgb[..., 0], rgb[..., 1])
        assert s.thumbnail_channels(40).shape == (32, 40, 3)
    with open_slide(path, channels=["cy5"]) as s:
        assert s.channels == [2]
        grey = s.read_region((0, 0), 0, (16, 16))
        assert np.array_equal(grey[..., 0], grey[..., 2])
    with pytest.raises(ValueError, match="no channel 'CD8'"):
        open_slide(path, channels=["CD8"])


def test_resolve_channel_by_name_or_index() -> None:
    names = ["DAPI", "FITC", "Cy5"]
    assert resolve_channel("fitc", names) == 1 and resolve_channel(2, names) == 2 and resolve_channel("0", names) == 0
    with pytest.raises(ValueError, match="out of range"):
        resolve_channel(3, names)


def test_real_qptiff_if_present() -> None:
    found = sorted(REAL_WSI.glob("*.qptiff")) if REAL_WSI.is_dir() else []
    if not found:
        pytest.skip("no QPTIFF in ../shared/data/real/wsi")
    from medwss.embed.tissue import detect_tissue

    with open_slide(found[0]) as s:
        assert s.is_fluorescence and len(s.channel_names or []) >= 2
        w, h = s.level_dimensions[-1]
        assert s.read_channels((0, 0), s.level_count - 1, (min(w, 64), min(h, 64))).ndim == 3
        if s.has_mpp:
            assert detect_tissue(s).fraction > 0
