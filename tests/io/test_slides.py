"""Whole-slide reading: every real file with the behaviour its README gives, both backends, mpp reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.errors import CorruptFileError, FileNotFound, MissingMetadataError, UnsupportedFormatError
from medwss.io import open_slide
from medwss.io.slide import Slide
from medwss.io.slide_tifffile import TiffFileBackend
from medwss.io.tiff_writer import write_pyramid_tiff


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w) + 64], -1).astype(np.uint8)


def test_cmu_small_region(real):
    with open_slide(real / "wsi" / "cmu-1-small-region.svs") as s:
        assert s.level_dimensions == [(2220, 2967)]
        assert s.mpp == pytest.approx(0.499)
        assert s.objective_power == 20
        assert s.vendor == "aperio"
        assert set(s.associated_images) == {"label", "macro", "thumbnail"}
        assert s.associated_image("label").ndim == 3
        region = s.read_region((1000, 1000), 0, (256, 128))
        assert region.shape == (128, 256, 3) and region.dtype == np.uint8
        assert region.mean() < 240  # tissue, not background
        tile = s.read_region_mpp((0, 0), (224, 224), 1.0)  # 2x coarser than level 0
        assert tile.shape == (224, 224, 3)
        # 0.5 µm/px from a 0.499 µm/px level 0: 224.4 source pixels resized to 224
        at_half = s.read_region_mpp((1000, 1000), (224, 224), 0.5)
        direct = s.read_region((1000, 1000), 0, (224, 224))
        assert at_half.shape == (224, 224, 3)
        assert np.abs(at_half.astype(int) - direct).mean() < 20
        thumb = s.thumbnail(512)
        assert max(thumb.shape[:2]) == 512


def test_small_svs_reads(real):
    with open_slide(real / "wsi" / "small.svs") as s:
        assert s.dimensions == (16, 16)
        assert s.read_region((0, 0), 0, (16, 16)).shape == (16, 16, 3)


def test_unreadable_svs_opens_but_region_read_names_file(real):
    s = open_slide(real / "wsi" / "unreadable.svs")
    with pytest.raises(CorruptFileError, match="unreadable.svs"):
        s.read_region((0, 0), 0, (16, 16))


@pytest.mark.parametrize("name", ["broken.svs", "unopenable.tiff"])
def test_unopenable_files_raise_naming_file(real, name):
    with pytest.raises((CorruptFileError, UnsupportedFormatError), match=name) as err:
        open_slide(real / "wsi" / name)
    assert "\n" not in str(err.value)


def test_boxes_levels_and_level0_equals_png(real):
    from PIL import Image

    ref = np.asarray(Image.open(real / "wsi" / "boxes.png").convert("RGB"))
    with open_slide(real / "wsi" / "boxes.tiff") as s:
        assert s.level_count == 4
        assert s.level_dimensions[0] == (300, 250) and s.level_dimensions[-1] == (37, 31)
        np.testing.assert_array_equal(s.read_region((0, 0), 0, (300, 250)), ref)


def test_tifffile_backend_matches_openslide_on_boxes(real):
    path = real / "wsi" / "boxes.tiff"
    fallback = Slide(TiffFileBackend(path), path)
    with open_slide(path) as s:
        assert fallback.level_dimensions == s.level_dimensions
        for level, (w, h) in enumerate(s.level_dimensions):
            np.testing.assert_array_equal(
                fallback.read_region((0, 0), level, (w, h)), s.read_region((0, 0), level, (w, h))
            )
        # an offset region at level 1 (even level-0 coordinates map to whole level-1 pixels)
        np.testing.assert_array_equal(fallback.read_region((40, 42), 1, (50, 40)), s.read_region((40, 42), 1, (50, 40)))


def test_tifffile_backend_reads_aperio_like_openslide(real):
    path = real / "wsi" / "cmu-1-small-region.svs"
    fallback = Slide(TiffFileBackend(path), path)
    assert fallback.mpp == pytest.approx(0.499)
    assert fallback.objective_power == 20
    with open_slide(path) as s:
        np.testing.assert_array_equal(
            fallback.read_region((500, 700), 0, (300, 260)), s.read_region((500, 700), 0, (300, 260))
        )


@pytest.mark.parametrize("name", ["boxes_0.dcm", "boxes_1.dcm"])
def test_dicom_wsi_opens(real, name):
    with open_slide(real / "wsi" / name) as s:
        assert s.reader == "openslide" and s.vendor == "dicom"
        assert s.mpp == pytest.approx(0.499)
        assert s.read_region((0, 0), 0, s.dimensions).shape[:2] == s.dimensions[::-1]


def test_dicom_wsi_folder_opens_as_one_slide(tmp_path, real):
    import shutil

    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(real / "wsi" / name, tmp_path / name)
    with open_slide(tmp_path) as s:
        assert s.vendor == "dicom" and s.dimensions == (16, 16)


def test_written_pyramid_opens_with_mpp_and_levels(tmp_path):
    img = _smooth_rgb(1200, 1000)
    path = write_pyramid_tiff(img, tmp_path / "s.tif", mpp=0.25, tile=128, min_size=200)
    with open_slide(path) as s:
        assert s.reader == "openslide"
        assert s.mpp == pytest.approx(0.25)
        assert s.level_dimensions == [(1000, 1200), (500, 600), (250, 300)]
        assert np.abs(s.read_region((0, 0), 0, (1000, 1200)).astype(int) - img).mean() < 2  # JPEG
        assert s.level_mpp(2) == pytest.approx(1.0)
        # 1 µm/px read comes from level 2 and has the requested size
        assert s.best_level_for_downsample(4.0) == 2
        assert s.read_region_mpp((0, 0), (100, 80), 1.0).shape == (80, 100, 3)
        # out-of-bounds area is white
        assert (s.read_region((900, 1100), 0, (200, 200))[150:, 150:] == 255).all()


def test_strip_tiff_falls_back_to_tifffile(tmp_path):
    import tifffile

    img = _smooth_rgb(300, 200)
    tifffile.imwrite(tmp_path / "strips.tif", img, photometric="rgb", rowsperstrip=7)
    with open_slide(tmp_path / "strips.tif", mpp=0.5) as s:
        np.testing.assert_array_equal(s.read_region((13, 29), 0, (150, 201)), _pad_white(img, 13, 29, 150, 201))


def _pad_white(img: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    out = np.full((h, w, 3), 255, np.uint8)
    crop = img[y : y + h, x : x + w]
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


def test_ome_tiff_pyramid_with_physical_size(tmp_path):
    import tifffile

    img = _smooth_rgb(512, 512)
    path = tmp_path / "s.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        meta = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
        tw.write(img, subifds=1, tile=(128, 128), photometric="rgb", metadata=meta)
        tw.write(img[::2, ::2], subfiletype=1, tile=(128, 128), photometric="rgb")
    s = Slide(TiffFileBackend(path), path)
    assert s.vendor == "ome" and s.mpp == pytest.approx(0.25)
    assert s.level_dimensions == [(512, 512), (256, 256)]
    np.testing.assert_array_equal(s.read_region((64, 32), 1, (100, 50)), img[::2, ::2][16:66, 32:132])
    with open_slide(path) as opened:  # whichever backend opens it, the pixels are the same
        np.testing.assert_array_equal(opened.read_region((0, 0), 0, (512, 512)), img)


def test_missing_mpp_error_tells_user_to_pass_one(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "nompp.tif", _smooth_rgb(64, 64), photometric="rgb", tile=(16, 16))
    s = open_slide(tmp_path / "nompp.tif")
    with pytest.raises(MissingMetadataError, match="--mpp"):
        _ = s.mpp
    assert open_slide(tmp_path / "nompp.tif", mpp=0.5).mpp == 0.5


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFound, match="nope.svs"):
        open_slide(tmp_path / "nope.svs")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UnsupportedFormatError, match="a.txt"):
        open_slide(tmp_path / "a.txt")
    empty = Path(tmp_path / "empty")
    empty.mkdir()
    with pytest.raises(UnsupportedFormatError, match="no DICOM whole-slide"):
        open_slide(empty)
