"""Outputs for viewers and archives: DICOM SEG, NIfTI label maps with a 3D Slicer colour table, probability maps.

Every output lies on the *source grid*: the grid of the image the prediction was made for, as
`medwss.io.load_volume` reads it (array axes ``(i, j, k)``, RAS affine). A label map holds class
ids ``0..K-1`` of a `medwss.data.labels.LabelSpec` (class ``c`` is segment ``c``, named
``spec.names[c]``); ``IGNORE = -1`` voxels are written as background in a DICOM SEG and as ``-1``
(medwss's on-disk "unlabelled") in a NIfTI.

- `write_dicom_seg`: a DICOM Segmentation object referencing the source series (through highdicom,
  the optional extra ``pip install medwss[dicom]``), one segment per class with its name, a
  SNOMED CT code where medwss knows one, and its colour. Frames follow the source instances:
  slice ``k`` of the label map (the ``k``-th instance by position along the slice normal, as
  `load_volume` orders a series) is frame ``labels[:, :, k].T`` (rows, columns) of that instance.
  `read_dicom_seg` maps a SEG back onto the source grid.
- `write_slicer_labels`: an int16 NIfTI label map and beside it ``<name>.ctbl``, a 3D Slicer colour
  table (``index name R G B A``) with the class names; `write_colour_table`, `read_colour_table`.
- `write_probability_map`: a float32 NIfTI on the source grid.
- `write_outputs`: any of these for one case, the entry point of prediction commands.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medwss.data.labels import IGNORE, LabelSpec, label_spec, save_label_map
from medwss.errors import InvalidDataError, MedwssError, UnsupportedFormatError
from medwss.io.atomic import atomic_path, write_text
from medwss.io.volume import Volume

__all__ = [
    "FORMATS",
    "colour_table_path",
    "read_colour_table",
    "read_dicom_seg",
    "segment_colours",
    "source_instances",
    "write_colour_table",
    "write_dicom_seg",
    "write_outputs",
    "write_probability_map",
    "write_slicer_labels",
]

OutputFormat = Literal["nifti", "dicom-seg", "slicer"]
FORMATS: tuple[str, ...] = ("nifti", "dicom-seg", "slicer")
"""Label-map output formats of `write_outputs`."""

RGB = tuple[int, int, int]

_COLOURS: dict[str, RGB] = {
    "liver": (221, 130, 101),
    "spleen": (157, 108, 162),
    "kidney": (185, 102, 83),
    "right_kidney": (185, 102, 83),
    "left_kidney": (212, 126, 151),
    "kidney_tumor": (255, 255, 0),
    "tumour": (255, 255, 0),
    "tumor": (255, 255, 0),
    "lesion": (255, 48, 48),
    "foreground": (0, 200, 0),
    "rv": (0, 120, 255),
    "myo": (255, 160, 0),
    "lv": (220, 40, 40),
    "prostate": (230, 200, 160),
}
"""medwss's colours for the class names it ships; other classes take `_PALETTE` in turn."""

_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip

# (code value, scheme, meaning) of the segmented property category and type (DICOM CID 7150 / 7151)
_ANATOMY = ("91723000", "SCT", "Anatomical Structure")
_ALTERED = ("49755003", "SCT", "Morphologically Altered Structure")
_TISSUE = ("85756007", "SCT", "Tissue")
_CODES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "liver": (_ANATOMY, ("10200004", "SCT", "Liver")),
    "spleen": (_ANATOMY, ("78961009", "SCT", "Spleen")),
    "kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "right_kidney": (_ANATOMY, ("9846003", "SCT", "Right kidney")),
    "left_kidney": (_ANATOMY, ("18639004", "SCT", "Left kidney")),
    "prostate": (_ANATOMY, ("41216001", "SCT", "Prostate")),
    "rv": (_ANATOMY, ("53085002", "SCT", "Right ventricle")),
    "lv": (_ANATOMY, ("87878005", "SCT", "Left ventricle")),
    "myo": (_ANATOMY, ("74281007", "SCT", "Myocardium")),
    "lesion": (_ALTERED, ("52988006", "SCT", "Lesion")),
    "tumour": (_ALTERED, ("108369006", "SCT", "Neoplasm")),
    "tumor": (_ALTERED, ("108369006", "SCT", "Neoplasm")),
    "kidney_tumor": (_ALTERED, ("108369006", "SCT", "Neoplasm")),
}
"""SNOMED CT codes of the class names medwss ships; any other class is coded as "Tissue"."""


def segment_colours(spec: LabelSpec, colours: Mapping[str, Sequence[int]] | None = None) -> list[RGB]:
    """RGB colour (0-255) of each class 1..K of `spec`: `colours` by name, medwss's own, else a palette."""
    given = {k: tuple(int(v) for v in c) for k, c in (colours or {}).items()}
    out: list[RGB] = []
    spare = 0
    for name in spec.names[1:]:
        if name in given:
            c = given[name]
        elif name.lower() in _COLOURS:
            c = _COLOURS[name.lower()]
        else:
            c, spare = _PALETTE[spare % len(_PALETTE)], spare + 1
        if len(c) != 3 or not all(0 <= v <= 255 for v in c):
            raise InvalidDataError(f"colour of class '{name}' must be 3 values in 0..255, got {c}")
        out.append((int(c[0]), int(c[1]), int(c[2])))
    return out


def _spec(spec: LabelSpec | str | None, labels: np.ndarray) -> LabelSpec:
    if spec is None:
        top = int(labels.max()) if labels.size else 0
        return LabelSpec.from_groups([[v] for v in range(1, max(top, 1) + 1)])
    return label_spec(spec)


def _class_ids(labels: np.ndarray, spec: LabelSpec, source: object = None) -> np.ndarray:
    """`labels` as class ids with `IGNORE` kept, after checking they are integers in ``-1..K-1``."""
    a = np.asarray(labels)
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise InvalidDataError(f"label map must be 3D (i, j, k), got shape {a.shape}", source)  # type: ignore[arg-type]
    integer = np.issubdtype(a.dtype, np.integer) or a.dtype == bool
    if not integer and (not np.all(np.isfinite(a)) or not np.all(np.mod(a, 1) == 0)):
        raise InvalidDataError(f"label map holds non-integer values (dtype {a.dtype})", source)  # type: ignore[arg-type]
    a = a.astype(np.int64)
    bad = (a < IGNORE) | (a >= spec.num_classes)
    if bad.any():
        raise InvalidDataError(
            f"label values {sorted(set(np.unique(a[bad]).tolist()))[:5]} outside the spec's 0..{spec.num_classes - 1}",
            source,  # type: ignore[arg-type]
        )
    return a


# --- DICOM SEG ------------------------------------------------------------------------------------
def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError as exc:
        raise MedwssError("DICOM SEG output needs highdicom: pip install 'medwss[dicom]'") from exc
    return highdicom


def source_instances(source: str | Path, series: str | None = None) -> list[Any]:
    """The image datasets (headers, no pixel data) of a DICOM source in the order of the volume's k axis.

    A series folder is ordered as `medwss.io.load_volume` orders it (position along the slice
    normal); a single file is one dataset.

    Raises:
        UnsupportedFormatError, AmbiguousInputError, InvalidDataError: not DICOM, several series
        without `series`, or slices without a position.
    """
    import pydicom

    from medwss.io.dicom import _choose, _geometry, is_dicom, list_series

    p = Path(source)
    if p.is_dir():
        items = _choose(p, list_series(p), series)
        _, _, normal, _ = _geometry(items[0][1])
        keys = []
        for f, ds in items:
            if "ImagePositionPatient" not in ds:
                raise InvalidDataError("slice has no ImagePositionPatient; cannot order the series", f)
            keys.append(float(np.asarray(ds.ImagePositionPatient, dtype=np.float64) @ normal))
        return [items[i][1] for i in np.argsort(keys, kind="stable")]
    if p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom(p)):
        return [pydicom.dcmread(p, stop_before_pixels=True, force=True)]
    raise UnsupportedFormatError("DICOM SEG needs a DICOM source: a series folder or a DICOM file", p)


def _frames(labels: np.ndarray, datasets: Sequence[Any], source: object) -> np.ndarray:
    """(i, j, k) → (frames, rows, cols) in the order of the source instances (and of their frames)."""
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    n_frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)
    if labels.shape != (cols, rows, n_frames):
        raise InvalidDataError(
            f"label map {labels.shape} is not on the source grid (columns, rows, frames) = {(cols, rows, n_frames)}",
            source,  # type: ignore[arg-type]
        )
    return np.ascontiguousarray(labels.transpose(2, 1, 0))


def _check_grid(affine: np.ndarray | None, source: str | Path, series: str | None, atol: float) -> None:
    if affine is None:
        return
    from medwss.io.volumes import load_volume

    grid = load_volume(source, series=series).affine
    if not np.allclose(np.asarray(affine, dtype=np.float64), grid, atol=atol):
        raise InvalidDataError(
            "label map affine differs from the source series' grid; resample it onto the source first", source
        )


def write_dicom_seg(
    labels: np.ndarray | Volume,
    source: str | Path,
    path: str | Path,
    spec: LabelSpec | str | None = None,
    *,
    series: str | None = None,
    colours: Mapping[str, Sequence[int]] | None = None,
    series_description: str = "medwss segmentation",
    series_number: int = 900,
    segmentation_type: Literal["binary", "labelmap"] = "binary",
    algorithm: str = "medwss",
    atol: float = 1e-3,
) -> Path:
    """Write a label map on a DICOM source's grid as a DICOM Segmentation object, atomically.

    Args:
        labels: Class ids ``0..K-1`` (``-1`` = unlabelled, written as background) on the source grid,
            indexed ``(i, j, k)`` as `load_volume` returns the source; a `Volume` has its affine
            checked against the source's.
        source: The DICOM series folder (or single DICOM file) the prediction was made for.
        path: Output ``.dcm`` file.
        spec: Class names (class ``c`` → segment ``c``); a `LABEL_SPECS` name; None: ``class1..``.
        series: SeriesInstanceUID or SeriesNumber when `source` holds several series.
        colours: ``{class name: (R, G, B)}`` overriding `segment_colours`.
        series_description: SeriesDescription of the SEG.
        series_number: SeriesNumber of the SEG.
        segmentation_type: ``binary`` (one bit plane per segment, read by every viewer) or
            ``labelmap`` (the 2024 label-map SEG, smaller, read by fewer viewers).
        algorithm: Algorithm name recorded for every segment.
        atol: Tolerance (mm) of the grid check.

    Returns:
        `path`.

    Raises:
        MedwssError: highdicom is not installed.
        InvalidDataError: the label map is not on the source grid, or holds values outside the spec.
    """
    hd = _highdicom()
    from pydicom.sr.coding import Code

    import medwss

    affine = labels.affine if isinstance(labels, Volume) else None
    array = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    sp = _spec(spec, np.asarray(array))
    ids = _class_ids(array, sp, path)
    datasets = source_instances(source, series)
    _check_grid(affine, source, series, atol)
    frames = _frames(np.where(ids < 0, 0, ids), datasets, source)
    frames = frames.astype(np.uint8 if sp.num_classes <= 256 else np.uint16)
    family = Code("123110", "DCM", "Artificial Intelligence")
    algo = hd.AlgorithmIdentificationSequence(name=algorithm, family=family, version=medwss.__version__)
    descriptions = []
    for number, (name, rgb) in enumerate(zip(sp.names[1:], segment_colours(sp, colours), strict=True), start=1):
        category, kind = _CODES.get(name.lower(), (_TISSUE, _TISSUE))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=Code(*category),
                segmented_property_type=Code(*kind),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                display_color=hd.color.CIELabColor.from_rgb(*rgb),
            )
        )
    seg_type = hd.seg.SegmentationTypeValues.LABELMAP if segmentation_type == "labelmap" else "BINARY"
    seg = hd.seg.Segmentation(
        source_images=list(datasets),
        pixel_array=frames,
        segmentation_type=seg_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medwss",
        manufacturer_model_name=algorithm,
        software_versions=medwss.__version__,
        device_serial_number="none",
        series_description=series_description,
        content_label=re.sub(r"[^A-Z0-9_ ]", "_", algorithm.upper())[:16] or "MEDWSS",
        content_description=f"{len(descriptions)} segment(s): {', '.join(sp.names[1:])}"[:64],
        omit_empty_frames=bool(frames.any()),
    )
    seg.SeriesDate = seg.ContentDate = datetime.date.today().strftime("%Y%m%d")
    out = Path(path)
    with atomic_path(out) as tmp:
        seg.save_as(str(tmp), enforce_file_format=True)
    return out


def read_dicom_seg(path: str | Path, source: str | Path, series: str | None = None) -> np.ndarray:
    """A DICOM SEG's segments as one label map ``(i, j, k)`` of segment numbers on the source grid.

    Frames are matched to the source instances by SOPInstanceUID, so the SEG may list them in any
    order and omit empty ones. Overlapping segments (not written by medwss) raise.
    """
    hd = _highdicom()
    seg = hd.seg.segread(str(path))
    datasets = source_instances(source, series)
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        uid = str(datasets[0].SOPInstanceUID)
        n = int(datasets[0].NumberOfFrames)
        pixels = seg.get_pixels_by_source_frame(uid, list(range(1, n + 1)), combine_segments=True)
    else:
        uids = [str(ds.SOPInstanceUID) for ds in datasets]
        pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    return np.ascontiguousarray(np.asarray(pixels).transpose(2, 1, 0)).astype(np.int64)


# --- Slicer colour table and NIfTI ----------------------------------------------------------------
def write_colour_table(
    spec: LabelSpec | str, path: str | Path, colours: Mapping[str, Sequence[int]] | None = None
) -> Path:
    """Write a 3D Slicer discrete colour table (``.ctbl`` or ``.txt``): ``index name R G B A`` per class.

    Background is index 0, transparent; spaces in names become underscores (the format's rule).
    In Slicer: load the table, then the label map with "LabelMap" checked and this colour table
    selected; converting it to a segmentation keeps the names and colours.
    """
    sp = label_spec(spec)
    rows = ["0 background 0 0 0 0"]
    for index, (name, rgb) in enumerate(zip(sp.names[1:], segment_colours(sp, colours), strict=True), start=1):
        safe = re.sub(r"\s+", "_", name.strip())
        rows.append(f"{index} {safe} {rgb[0]} {rgb[1]} {rgb[2]} 255")
    out = Path(path)
    header = [f"# Color table file {out.name}", f"# {len(rows)} values"]
    return write_text(out, "\n".join(header + rows) + "\n")


def read_colour_table(path: str | Path) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    """A Slicer discrete colour table as ``{index: (name, (R, G, B, A))}``.

    Raises:
        InvalidDataError: a line that is not ``index name R G B A``.
    """
    out: dict[int, tuple[str, tuple[int, int, int, int]]] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        try:
            index, name, rgba = int(parts[0]), parts[1], tuple(int(v) for v in parts[2:6])
        except (ValueError, IndexError):
            raise InvalidDataError(f"line {n} is not 'index name R G B A': {line!r}", path) from None
        if len(rgba) != 4 or not all(0 <= v <= 255 for v in rgba):
            raise InvalidDataError(f"line {n} needs R G B A in 0..255: {line!r}", path)
        out[index] = (name, (rgba[0], rgba[1], rgba[2], rgba[3]))
    return out


def colour_table_path(label_path: str | Path) -> Path:
    """``case.nii.gz`` → ``case.ctbl`` beside it."""
    p = Path(label_path)
    stem = p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else p.stem
    return p.with_name(f"{stem}.ctbl")


def _grid(volume: Volume | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    affine = volume.affine if isinstance(volume, Volume) else np.asarray(volume, dtype=np.float64)
    if isinstance(volume, Volume) and volume.shape[:3] != shape[:3]:
        raise InvalidDataError(f"array {shape} is not on the source grid {volume.shape[:3]}", volume.path)
    return affine


def write_slicer_labels(
    labels: np.ndarray,
    volume: Volume | np.ndarray,
    path: str | Path,
    spec: LabelSpec | str | None = None,
    colours: Mapping[str, Sequence[int]] | None = None,
) -> tuple[Path, Path]:
    """Write the label map as int16 NIfTI (``-1`` = unlabelled) and a Slicer colour table beside it.

    Args:
        labels: Class ids on the grid of `volume`.
        volume: The source `Volume` (or its 4×4 affine).
        path: ``.nii.gz`` output; the table is `colour_table_path` of it.
        spec, colours: As `write_dicom_seg`.

    Returns:
        (label map path, colour table path).
    """
    sp = _spec(spec, np.asarray(labels))
    ids = _class_ids(labels, sp, path)
    nifti = save_label_map(ids, path, _grid(volume, ids.shape))
    return nifti, write_colour_table(sp, colour_table_path(nifti), colours)


def write_probability_map(prob: np.ndarray, volume: Volume | np.ndarray, path: str | Path) -> Path:
    """Write probabilities (3D, or 4D with classes on the last axis) as float32 NIfTI on the source grid.

    Raises:
        InvalidDataError: not on the grid, or values outside [0, 1] (NaN allowed).
    """
    from medwss.io.volumes import save_nifti

    p = np.asarray(prob, dtype=np.float32)
    affine = _grid(volume, p.shape)
    finite = p[np.isfinite(p)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise InvalidDataError(f"values in [{finite.min():.3g}, {finite.max():.3g}] are not probabilities", path)  # type: ignore[arg-type]
    return save_nifti(p, path, affine)


def _stem(path: str | None) -> str:
    name = Path(path or "case").name
    for suffix in (".nii.gz", ".nii", ".dcm", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_outputs(
    volume: Volume,
    labels: np.ndarray | None,
    spec: LabelSpec | str | None,
    out: str | Path,
    formats: Sequence[str] = ("nifti",),
    *,
    name: str | None = None,
    probabilities: np.ndarray | None = None,
    source: str | Path | None = None,
    colours: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Path]:
    """Write one case's outputs on the source grid of `volume` into folder `out`.

    Args:
        volume: The source image as `load_volume` read it (its ``path`` is the DICOM source for
            ``dicom-seg`` unless `source` is given).
        labels: Class ids on that grid (None: probabilities only).
        spec: Class names; None: ``class1..``.
        out: Output folder.
        formats: Any of ``nifti`` (``<name>.nii.gz``), ``slicer`` (``<name>.nii.gz`` and
            ``<name>.ctbl``), ``dicom-seg`` (``<name>_seg.dcm``).
        name: File stem (default: the source's name).
        probabilities: Also write ``<name>_prob.nii.gz`` (float32).
        source: DICOM source of the SEG (default ``volume.path``).
        colours: ``{class: (R, G, B)}`` overrides.

    Returns:
        ``{"labels", "colour_table", "dicom_seg", "probabilities"}`` → the paths written.

    Raises:
        ConfigError-like `InvalidDataError`: an unknown format, or ``dicom-seg`` without a DICOM source.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InvalidDataError(f"unknown output format(s) {unknown}: choose from {', '.join(FORMATS)}")
    folder = Path(out)
    stem = name or _stem(volume.path)
    written: dict[str, Path] = {}
    if labels is not None:
        if "slicer" in formats:
            written["labels"], written["colour_table"] = write_slicer_labels(
                labels, volume, folder / f"{stem}.nii.gz", spec, colours
            )
        elif "nifti" in formats:
            sp = _spec(spec, np.asarray(labels))
            written["labels"] = save_label_map(_class_ids(labels, sp), folder / f"{stem}.nii.gz", volume.affine)
        if "dicom-seg" in formats:
            src = source if source is not None else volume.path
            if src is None:
                raise InvalidDataError("dicom-seg output needs the DICOM source of the volume")
            written["dicom_seg"] = write_dicom_seg(
                volume.with_array(np.asarray(labels)), src, folder / f"{stem}_seg.dcm", spec, colours=colours
            )
    if probabilities is not None:
        written["probabilities"] = write_probability_map(probabilities, volume, folder / f"{stem}_prob.nii.gz")
    return written
