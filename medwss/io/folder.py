"""Cases from a plain folder, nnU-Net style: ``predict -i DIR -o DIR`` without a manifest.

`cases_from_folder` turns a folder into manifest `Case` rows (split, label and mask unset):

- **Volume files** (NIfTI, NRRD, MHA/MHD, ``.dcm`` files of volumes): one case per file, the case id
  the file name without its extension (``case_01.nii.gz`` → ``case_01``).
- **nnU-Net channels**: when every volume file ends in a four-digit channel suffix and some end in
  ``_0000`` (nnU-Net's ``{case}_{XXXX}.nii.gz``), files are grouped by the id before the suffix into
  one multi-channel case, channels in suffix order (``0000``, ``0001``, ...). They are named by
  `channels` when given (a model's input channels, e.g. ``t2, adc, hbv``), else ``image`` for a
  single channel and ``0000``, ``0001``, ... for several. A case whose suffixes are not ``0000``
  to ``N-1`` without a gap is skipped and reported.
- **DICOM series**: every sub-folder holding one DICOM image series is one case, the id the
  sub-folder name; DICOM files lying loose in the folder itself make one case named after the folder.
  A sub-folder with several series (or none) is skipped and reported.
- **Slides** (SVS, NDPI, MRXS, TIFF, ..., and DICOM WSI sub-folders with ``modality="WSI"``): one case
  per slide, the id its stem.

Each file is checked from its header (NIfTI/ITK header, DICOM headers, slide properties): a file that
cannot be read is skipped and reported, never the whole folder. Files medwss does not read
(``.csv``, ``.json``, hidden files, ...) are ignored. The modality is `modality` when given, else
the DICOM header's, else ``WSI`` for slides and ``OT`` otherwise.

`bags_from_folder` does the same for a folder of feature bags (``medwss embed`` bags, CLAM or
TRIDENT ``.h5`` files with ``features`` and ``coords``): one case per ``.h5`` file, the id its stem
(``slide_01.h5`` → ``slide_01``), no image, no label; `holds_bags` tells the two kinds of folder apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from medwss.data.manifest import MODALITIES, Case, Manifest, case_id_problem
from medwss.errors import InvalidDataError, MedwssError, require_file

__all__ = ["FOLDER_SUFFIXES", "bags_from_folder", "cases_from_folder", "cases_from_input", "holds_bags", "strip_suffix"]

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_VOLUME = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl.gz", ".gipl", ".vtk")
_SLIDE = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".svslide", ".bif", ".qptiff", ".tif", ".tiff")
FOLDER_SUFFIXES = _VOLUME + (".dcm",) + _SLIDE
"""File endings `cases_from_folder` reads (longest first where one ends another)."""


def strip_suffix(name: str, suffixes: Sequence[str] = FOLDER_SUFFIXES) -> str | None:
    """`name` without the first of `suffixes` it ends with (case-insensitive); None when none matches."""
    low = name.lower()
    for s in sorted(suffixes, key=len, reverse=True):
        if low.endswith(s) and len(name) > len(s):
            return name[: -len(s)]
    return None


def _check_volume(path: Path) -> str | None:
    """The DICOM modality of a readable volume file ('' when not DICOM); raises when it cannot be read."""
    from medwss.io.dicom import is_dicom

    low = path.name.lower()
    if low.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        from medwss.io.volumes import _check_nifti_header

        try:
            img = nib.load(str(path))
        except Exception as exc:
            raise InvalidDataError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from exc
        _check_nifti_header(img, path)
        return ""
    if low.endswith(".dcm") or is_dicom(path):
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise InvalidDataError(f"cannot read DICOM ({type(exc).__name__}: {exc})", path) from exc
        if "Rows" not in ds:
            raise InvalidDataError("DICOM file holds no image", path)
        return str(ds.get("Modality", ""))
    import SimpleITK as sitk

    from medwss.io.volumes import _check_itk_header

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidDataError(f"cannot read image header ({first})", path) from exc
    _check_itk_header(path)
    return ""


def _check_slide(path: Path) -> None:
    from medwss.io.slide import open_slide

    slide = open_slide(path)
    close = getattr(slide, "close", None)
    if callable(close):
        close()


def _series_modality(folder: Path) -> str:
    """The modality of the one DICOM series in `folder`; raises when it holds none or several."""
    from medwss.io.dicom import list_series

    groups = list_series(folder)
    if not groups:
        raise InvalidDataError("folder holds no DICOM image series", folder)
    if len(groups) > 1:
        raise InvalidDataError(
            f"folder holds {len(groups)} DICOM series: put each series in its own sub-folder", folder
        )
    items = next(iter(groups.values()))
    return str(items[0][1].get("Modality", ""))


def _modality(given: str | None, found: str, slide: bool) -> str:
    if given:
        return given
    if found in MODALITIES:
        return found
    return "WSI" if slide else "OT"


def _case(case_id: str, images: dict[str, Path], modality: str) -> Case:
    return Case(case_id=case_id, patient_id=case_id, site="unknown", modality=modality, images=images)


def cases_from_folder(
    folder: str | Path, modality: str | None = None, *, channels: Sequence[str] | None = None
) -> tuple[list[Case], list[dict[str, str]]]:
    """Manifest cases of every image in `folder` (see the module docstring for the rules).

    Args:
        folder: A folder of NIfTI/NRRD/MHA files, DICOM series sub-folders or slides.
        modality: Modality of every case (one of `medwss.data.manifest.MODALITIES`); ``WSI`` also
            reads ``.dcm`` files and DICOM sub-folders as slides. None: from the files.
        channels: Names of the nnU-Net channels ``_0000``, ``_0001``, ... in order (a model's inputs).

    Returns:
        The cases, sorted by id, and the files skipped as ``{"path", "error"}`` rows.

    Raises:
        FileNotFound: `folder` does not exist.
        InvalidDataError: `folder` is not a folder, holds no image file, or none of its files can be read
            (the message names the first problems).
    """
    root = require_file(folder)
    if not root.is_dir():
        raise InvalidDataError("not a folder (-i takes a folder of images)", root)
    if modality is not None and modality not in MODALITIES:
        raise InvalidDataError(f"modality '{modality}' is not one of {', '.join(MODALITIES)}", root)
    wsi = modality == "WSI"
    from medwss.io.dicom import is_dicom

    skipped: list[dict[str, str]] = []
    files: list[tuple[str, Path]] = []  # (stem, path) of volume files
    slides: list[tuple[str, Path]] = []
    loose_dicom: list[Path] = []
    subdirs: list[Path] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            subdirs.append(p)
            continue
        stem = strip_suffix(p.name)
        low = p.name.lower()
        if (stem is not None and low.endswith(_SLIDE)) or (wsi and low.endswith(".dcm")):
            slides.append((stem or p.stem, p))
        elif stem is not None and not low.endswith(".dcm"):
            files.append((stem, p))
        elif low.endswith(".dcm") or is_dicom(p):
            loose_dicom.append(p)
    found: dict[str, tuple[dict[str, Path], str, bool]] = {}  # case id -> (images, modality, slide)

    def add(case_id: str, images: dict[str, Path], mod: str, slide: bool, where: Path) -> None:
        problem = case_id_problem(case_id)
        if problem is None and case_id in found:
            problem = f"case id '{case_id}' is taken by another file ({next(iter(found[case_id][0].values()))})"
        if problem:
            skipped.append({"path": str(where), "error": problem})
        else:
            found[case_id] = (images, _modality(modality, mod, slide), slide)

    def check(path: Path, fn) -> str | None:  # noqa: ANN001
        try:
            return fn(path) or ""
        except (MedwssError, OSError, ValueError) as exc:
            skipped.append({"path": str(path), "error": str(exc) if str(path) in str(exc) else f"{path}: {exc}"})
            return None

    nnunet = bool(files) and all(_CHANNEL.match(s) for s, _ in files) and any(s.endswith("_0000") for s, _ in files)
    if nnunet:
        groups: dict[str, dict[int, Path]] = defaultdict(dict)
        for stem, p in files:
            m = _CHANNEL.match(stem)
            assert m is not None
            groups[m["case"]][int(m["channel"])] = p
        for cid, chans in sorted(groups.items()):
            idx = sorted(chans)
            if idx != list(range(len(idx))):
                skipped.append({
                    "path": str(chans[idx[0]]),
                    "error": f"case {cid}: channels {', '.join(f'{i:04d}' for i in idx)} are not 0000..{len(idx) - 1:04d}",
                })  # fmt: skip
                continue
            if channels is not None and len(channels) != len(idx):
                skipped.append({
                    "path": str(chans[0]),
                    "error": f"case {cid}: {len(idx)} channel file(s), the model takes {len(channels)} ({', '.join(channels)})",
                })  # fmt: skip
                continue
            mods = [check(chans[i], _check_volume) for i in idx]
            if any(m is None for m in mods):
                continue
            if channels is not None:
                names = list(channels)
            else:
                names = ["image"] if len(idx) == 1 else [f"{i:04d}" for i in idx]
            add(cid, {n: chans[i] for n, i in zip(names, idx, strict=True)}, mods[0] or "", False, chans[0])
    else:
        for stem, p in files:
            mod = check(p, _check_volume)
            if mod is not None:
                add(stem, _single(p, channels), mod, False, p)
    for stem, p in slides:
        if check(p, _check_slide) is not None:
            add(stem, {"image": p}, "", True, p)
    if loose_dicom:
        mod = check(root, _series_modality)
        if mod is not None:
            add(root.name, _single(root, channels), mod, False, root)
    for d in subdirs:
        if wsi:
            if check(d, _check_slide) is not None:
                add(d.name, {"image": d}, "", True, d)
            continue
        mod = check(d, _series_modality)
        if mod is not None:
            add(d.name, _single(d, channels), mod, False, d)
    if not found:
        if not skipped:
            raise InvalidDataError(
                "no image in this folder (NIfTI/NRRD/MHA files, DICOM series sub-folders or slides)", root
            )
        shown = "; ".join(s["error"] for s in skipped[:3])
        raise InvalidDataError(f"none of {len(skipped)} image(s) could be read: {shown}", root)
    cases = [_case(cid, images, mod) for cid, (images, mod, _) in sorted(found.items())]
    return cases, skipped


def _single(path: Path, channels: Sequence[str] | None) -> dict[str, Path]:
    """A one-channel case's images: named by the single model channel when there is one."""
    if channels is not None and len(channels) == 1:
        return {channels[0]: path}
    return {"image": path}


def cases_from_input(
    manifest: str | Path | None = None,
    folder: str | Path | None = None,
    modality: str | None = None,
    channels: Sequence[str] | None = None,
) -> tuple[Manifest | None, list[Case], list[dict[str, str]]]:
    """The cases of a predict command: a manifest *or* a folder (``-i DIR``), never both.

    Returns:
        The manifest (None for a folder), its cases, and the files skipped (folder only).

    Raises:
        ConfigError: Both or neither are given.
    """
    from medwss.data.manifest import load_manifest
    from medwss.errors import ConfigError

    if folder and manifest:
        raise ConfigError(f"give a manifest or -i/--input DIR, not both (got {manifest} and -i {folder})")
    if not folder and not manifest:
        raise ConfigError("give a manifest or -i/--input DIR (a folder of images)")
    if folder:
        cases, skipped = cases_from_folder(folder, modality, channels=channels)
        return None, cases, skipped
    assert manifest is not None
    m = load_manifest(manifest)
    return m, list(m.cases), []


def _bag_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(".h5")
        and not p.name.lower().endswith(".tiles.h5")
    )  # fmt: skip


def holds_bags(folder: str | Path) -> bool:
    """True when `folder` holds feature bags (``.h5`` files other than ``.tiles.h5``), False for images.

    Raises:
        FileNotFound: `folder` does not exist.
        InvalidDataError: Not a folder, or it holds both bags and image files (one kind per folder).
    """
    root = require_file(folder)
    if not root.is_dir():
        raise InvalidDataError("not a folder (-i takes a folder of feature bags or images)", root)
    bags = _bag_files(root)
    if not bags:
        return False
    images = [p.name for p in root.iterdir() if p.is_file() and strip_suffix(p.name) is not None]
    if images:
        raise InvalidDataError(
            f"folder holds both feature bags ({bags[0].name}, ...) and images ({images[0]}, ...): give one kind", root
        )
    return True


def _check_bag(path: Path) -> None:
    """Raise unless `path` is an HDF5 file with a 2D (or (1, N, C)) numeric ``features`` dataset."""
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            d = f.get("features")
            if not isinstance(d, h5py.Dataset):
                raise InvalidDataError(f"no 'features' dataset (has: {', '.join(f.keys()) or 'nothing'})", path)
            shape = tuple(d.shape or ())
            if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)) or not np.issubdtype(d.dtype, np.number):
                raise InvalidDataError(f"'features' must be N×C numbers, got shape {shape} of {d.dtype}", path)
    except OSError as exc:
        raise InvalidDataError(f"not a readable HDF5 feature bag ({exc})", path) from exc


def bags_from_folder(folder: str | Path) -> tuple[list[Case], list[dict[str, str]]]:
    """Bag-only cases (``features`` set; no image, label or split) of every ``.h5`` bag in `folder`.

    Each file is checked from its header (a ``features`` dataset of N×C numbers); a file that fails,
    or whose stem is not a valid case id, is skipped and reported.

    Returns:
        The cases, sorted by id, and the files skipped as ``{"path", "error"}`` rows.

    Raises:
        FileNotFound: `folder` does not exist.
        InvalidDataError: Not a folder, no ``.h5`` file in it, or none of them can be read.
    """
    root = require_file(folder)
    if not root.is_dir():
        raise InvalidDataError("not a folder (-i takes a folder of feature bags)", root)
    cases: list[Case] = []
    skipped: list[dict[str, str]] = []
    for p in _bag_files(root):
        cid = p.name[: -len(".h5")]
        problem = case_id_problem(cid)
        if problem is None:
            try:
                _check_bag(p)
            except MedwssError as exc:
                problem = str(exc)
        if problem:
            skipped.append({"path": str(p), "error": problem if str(p) in problem else f"{p}: {problem}"})
            continue
        case = _case(cid, {}, "")
        case.features = p
        cases.append(case)
    if not cases:
        if not skipped:
            raise InvalidDataError("no feature bag (.h5) in this folder", root)
        shown = "; ".join(s["error"] for s in skipped[:3])
        raise InvalidDataError(f"none of {len(skipped)} bag(s) could be read: {shown}", root)
    return cases, skipped
