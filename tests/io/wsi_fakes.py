"""Tiny synthetic slides in formats the real folder lacks: DICOM WSI instances and PerkinElmer QPTIFF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

QPI_CHANNELS = ("DAPI", "FITC", "Cy5")


def write_dicom_wsi(
    path: Path,
    image: np.ndarray,
    tile: int = 16,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY"),
    mpp: float = 0.25,
    series: str | None = None,
    sparse: bool = False,
) -> Path:
    """One VL Whole Slide Microscopy instance of `image` (H, W, 3) uint8, uncompressed RGB tiles.

    The default `image_type` has no third value (no "flavor"), which OpenSlide refuses.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    h, w, _ = image.shape
    ty, tx = -(-h // tile), -(-w // tile)
    frames = np.full((ty * tx, tile, tile, 3), 255, np.uint8)
    for r in range(ty):
        for c in range(tx):
            blk = image[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
            frames[r * tx + c, : blk.shape[0], : blk.shape[1]] = blk
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series or generate_uid()
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", ds.SeriesInstanceUID])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["frame", ds.SeriesInstanceUID])
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = w * mpp / 1000, h * mpp / 1000
    ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
    ds.Modality, ds.ImageType = "SM", list(image_type)
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    measures = Dataset()
    measures.PixelSpacing = [mpp / 1000, mpp / 1000]
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    order = list(range(ty * tx))
    if sparse:  # frames stored in reverse order, placed by their positions
        order = order[::-1]
        ds.DimensionOrganizationType = "TILED_SPARSE"
        groups = []
        for i in order:
            pos = Dataset()
            pos.RowPositionInTotalImagePixelMatrix = (i // tx) * tile + 1
            pos.ColumnPositionInTotalImagePixelMatrix = (i % tx) * tile + 1
            g = Dataset()
            g.PlanePositionSlideSequence = DicomSequence([pos])
            groups.append(g)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    else:
        ds.DimensionOrganizationType = "TILED_FULL"
    ds.NumberOfFrames = len(order)
    ds.PixelData = frames[order].tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _qpi_description(name: str, kind: str = "FullResolution", mpp: float = 0.5) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n<PerkinElmer-QPI-ImageDescription>\r\n'
        f"<DescriptionVersion>2</DescriptionVersion>\r\n<ImageType>{kind}</ImageType>\r\n"
        f"<Name>{name}</Name>\r\n<ScanProfile><PixelSizeMicrons>{mpp}</PixelSizeMicrons></ScanProfile>\r\n"
        "</PerkinElmer-QPI-ImageDescription>"
    )


def fluorescence_image(h: int = 256, w: int = 320, seed: int = 0) -> np.ndarray:
    """(3, h, w) uint16 fluorescence: dense bright nuclei (DAPI) on a disc of tissue, a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    tissue = (yy - h / 2) ** 2 / (0.35 * h) ** 2 + (xx - w / 3) ** 2 / (0.25 * w) ** 2 < 1
    nuclei = tissue & (rng.random((h, w)) < 0.5)
    dapi = np.where(nuclei, 3000, np.where(tissue, 400, 20)) + rng.integers(0, 20, (h, w))
    fitc = np.where(tissue, 800, 30) + rng.integers(0, 30, (h, w))
    cy5 = np.where(tissue & (xx > w / 3), 1500, 10) + rng.integers(0, 10, (h, w))
    return np.stack([dapi, fitc, cy5]).astype(np.uint16)


def write_qptiff(path: Path, channels: np.ndarray, names: Sequence[str] = QPI_CHANNELS, mpp: float = 0.5) -> Path:
    """A PerkinElmer QPTIFF: full-resolution channel pages, an RGB thumbnail, then halved levels."""
    import tifffile

    from medwss.io.tiff_writer import downsample2

    levels = [channels]
    while min(levels[-1].shape[1:]) // 2 >= 64:
        levels.append(np.stack([downsample2(c) for c in levels[-1]]))
    with tifffile.TiffWriter(path) as tw:
        for li, level in enumerate(levels):
            for c, name in enumerate(names):
                tw.write(level[c], tile=(32, 32), photometric="minisblack", software="PerkinElmer-QPI",
                         description=_qpi_description(name, "FullResolution" if li == 0 else "ReducedResolution", mpp),
                         subfiletype=0 if li == 0 else 1, metadata=None)  # fmt: skip
            if li == 0:
                thumb = np.repeat((levels[0][0, ::4, ::4] >> 4).astype(np.uint8)[..., None], 3, axis=2)
                tw.write(thumb, photometric="rgb", software="PerkinElmer-QPI",
                         description=_qpi_description("Thumbnail", "Thumbnail", mpp), subfiletype=1, metadata=None)  # fmt: skip
    return path
