"""Round trip with nnU-Net: export manifests and active-learning annotations as an nnU-Net v2 raw dataset, and
read nnU-Net v2, nnU-Net v1 and Medical Segmentation Decathlon (MSD) raw datasets back as manifests.

**Export** (`export_manifest`, `export_al_state`) writes ``OUT/DatasetNNN_NAME/``::

    dataset.json         channel_names, labels (background 0, classes 1..K-1, "ignore": K), numTraining,
                         file_ending ".nii.gz"
    imagesTr/<case>_0000.nii.gz   one file per channel (_0001, ... in the manifest's channel order)
    labelsTr/<case>.nii.gz        uint8 (int16 beyond 254 classes); unlabelled voxels = K, the ignore label
    imagesTs/, labelsTs/          the manifest's ``test`` cases, images and (dense ``mask``) labels
    medwss_cases.csv     case_id, patient_id, site, modality, split of every case, so the import restores them
    splits_final.json    one fold (the manifest's train vs val) when it has val cases: copy it to
                         nnUNet_preprocessed/DatasetNNN_NAME/ to train fold 0 on that split
    failures.csv         the cases skipped, one line each (absent when none was)

A re-export into the same folder removes the case files of cases it no longer writes, so
``numTraining`` always matches ``imagesTr``.

nnU-Net v2's ignore label must be the highest integer and be named ``ignore`` in ``dataset.json``
(nnU-Net's documentation, "Ignore Label"); nnU-Net then trains with partial losses on the labelled
voxels only. Labels come from the manifest's ``scribble`` column (unlabelled = -1 on disk, the
project's convention, `medwss.data.labels`), its ``mask`` column (dense; an ignore label is declared
only when a mask holds unlabelled voxels), or the ingested slices of an active-learning state (each
slice pasted back into its volume at its canonical axial index, every other voxel = ignore).
Images stored as NIfTI are copied byte for byte; other formats are converted. Each label file is
written with its image's NIfTI header, so nnU-Net's geometry check sees the very same grid.

**Import** (`import_dataset`) reads ``dataset.json``: nnU-Net v2 (``channel_names``, ``labels``
name → value, ``imagesTr/<case>_XXXX<file_ending>`` or a ``dataset`` file list), nnU-Net v1 and MSD (``modality``, ``labels``
value → name, a ``training`` list of ``{image, label}``). MSD's 4D images (several channels in one
file) are refused with one line, or split into one NIfTI per channel with ``split_channels``.
Labels with an ignore label are rewritten as the project's int16 files (ignore → -1) beside the
manifest and go into its ``scribble`` column; dense labels are referenced as they are in its
``mask`` column. ``imagesTr`` cases are ``train``, ``imagesTs`` cases ``test``, unless
``medwss_cases.csv`` (written by the export) says otherwise.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from medwss.data.labels import IGNORE, LabelSpec, label_spec
from medwss.errors import ConfigError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path, write_json, write_text

DATASET_JSON = "dataset.json"
CASES_CSV = "medwss_cases.csv"
SPLITS_JSON = "splits_final.json"
IGNORE_NAME = "ignore"
FILE_ENDING = ".nii.gz"
AFFINE_TOL_MM = 1e-2
LabelSource = Literal["scribble", "mask"]
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_MR_NAMES = ("MR", "MRI", "T1", "T2", "FLAIR", "ADC", "DWI", "PD", "HBV", "DCE", "CINE", "SSFP", "T1C", "T1CE", "T1GD")


@dataclass
class ExportResult:
    """What an export wrote."""

    folder: Path
    training: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    num_classes: int = 0
    ignore: int | None = None
    failures: Path | None = None


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_NAME`` as nnU-Net v2 names raw datasets.

    Raises:
        ConfigError: The id is not 1..999 or the name is not letters, digits, ``_`` and ``-``.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise ConfigError(f"nnU-Net dataset id must be 1..999, got {dataset_id}")
    if not _NAME_OK.match(name):
        raise ConfigError(f"nnU-Net dataset name {name!r} must be letters, digits, _ and - (no spaces)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def channel_names(channels: Sequence[str], modality: str) -> dict[str, str]:
    """``channel_names`` of dataset.json: ``CT`` for a CT image (nnU-Net's CT normalisation), else the channel name."""
    out = {}
    for i, ch in enumerate(channels):
        if modality == "CT":
            out[str(i)] = "CT"
        else:
            out[str(i)] = (modality or "MR") if ch == "image" else ch
    return out


def dataset_json(
    channels: Mapping[str, str], class_names: Sequence[str], ignore: int | None, num_training: int, **extra: Any
) -> dict[str, Any]:
    """The content of an nnU-Net v2 ``dataset.json`` (the ignore label, when any, is the highest value)."""
    labels: dict[str, int] = {n: i for i, n in enumerate(class_names)}
    if ignore is not None:
        if ignore != len(class_names):
            raise ConfigError(f"the ignore label must be the highest value ({len(class_names)}), got {ignore}")
        labels[IGNORE_NAME] = ignore
    return {
        "channel_names": dict(channels),
        "labels": labels,
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
        **extra,
    }


def _class_names(num_classes: int, spec: LabelSpec | None, names: Sequence[str] | None = None) -> list[str]:
    if names:
        return list(names)
    if spec is not None:
        return spec.names
    return ["background"] + [f"class{c}" for c in range(1, num_classes)]


def _nifti_header(path: Path):  # noqa: ANN202
    import nibabel as nib

    return nib.load(str(path)).header.copy()


def _write_image(src: Path, dst: Path) -> None:
    """Copy a NIfTI image (gzipping a ``.nii``) or convert any other volume format, atomically."""
    from medwss.io.volumes import load_volume, save_nifti

    name = src.name.lower()
    if src.is_file() and name.endswith(".nii.gz"):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    elif src.is_file() and name.endswith(".nii"):
        with atomic_path(dst) as tmp, open(src, "rb") as fi, gzip.open(tmp, "wb", compresslevel=6) as fo:
            shutil.copyfileobj(fi, fo)
    else:
        save_nifti(load_volume(src), dst)


def write_label_like(labels: np.ndarray, image: Path, dst: Path, ignore: int | None) -> Path:
    """Write a label map (-1 = unlabelled) on `image`'s grid with `image`'s NIfTI header; -1 → `ignore`."""
    import nibabel as nib

    lab = np.asarray(labels)
    unknown = lab == IGNORE
    if unknown.any() and ignore is None:
        raise InvalidDataError("label map has unlabelled voxels but no ignore label is declared", dst)
    top = max(int(lab.max(initial=0)), ignore or 0)
    dtype = np.uint8 if top <= 255 else np.int16
    out = lab.astype(dtype)
    if ignore is not None:
        out[unknown] = ignore
    hdr = _nifti_header(image)
    hdr.set_data_dtype(dtype)
    hdr.set_slope_inter(1.0, 0.0)
    img = nib.Nifti1Image(out, None, header=hdr)
    with atomic_path(dst) as tmp:
        nib.save(img, str(tmp))
    return dst


def _check_grid(image_shape: tuple[int, ...], image_affine: np.ndarray, label: Any, what: str, path: Path) -> None:
    if tuple(label.shape[:3]) != tuple(image_shape[:3]):
        raise InvalidDataError(f"{what} shape {tuple(label.shape)} differs from the image's {tuple(image_shape)}", path)
    diff = float(np.abs(np.asarray(label.affine) - np.asarray(image_affine)).max())
    if diff > AFFINE_TOL_MM:
        raise InvalidDataError(f"{what} is not on the image's grid (affine off by up to {diff:.3g} mm)", path)


def _case_rows_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["case_id", "patient_id", "site", "modality", "split", "channels", "labels"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class _Item:
    """One case to export: its images (channel → path), label array source and metadata."""

    case_id: str
    images: dict[str, Path]
    load_label: Callable[[], tuple[np.ndarray, np.ndarray | None]] | None
    """Returns the label (-1 = unlabelled) on the image's grid and its affine (None: on the grid by construction)."""
    patient_id: str
    site: str
    modality: str
    split: str
    test_mask: Path | None = None


def _label_range(it: _Item, channels: list[str], spec: LabelSpec | None) -> tuple[int, bool]:
    """The highest class of one case's label (or test mask) and whether it has unlabelled voxels."""
    from medwss.data.labels import load_label_map

    if list(it.images) != channels:
        raise InvalidDataError(f"channels {list(it.images)} differ from the first case's {channels}")
    if it.split == "test":
        if it.test_mask is None:
            return 0, False
        m = load_label_map(it.test_mask)
        arr = spec.remap(m.array) if spec is not None else m.array
    else:
        assert it.load_label is not None
        arr, _ = it.load_label()
        if not (arr != IGNORE).any():
            raise InvalidDataError("no voxel is labelled")
    return int(arr.max(initial=0)), bool((arr == IGNORE).any())


def _write_case(it: _Item, folder: Path, spec: LabelSpec | None, ignore: int | None) -> Path | None:
    """Write one case's channels and label (test: its mask, if any); the label's path."""
    import nibabel as nib

    from medwss.data.labels import load_label_map

    test = it.split == "test"
    sub = "Ts" if test else "Tr"
    first = folder / f"images{sub}" / f"{it.case_id}_0000{FILE_ENDING}"
    ref_shape: tuple[int, ...] | None = None
    for c, (_, src) in enumerate(it.images.items()):
        dst = folder / f"images{sub}" / f"{it.case_id}_{c:04d}{FILE_ENDING}"
        _write_image(src, dst)
        shape = tuple(_nifti_header(dst).get_data_shape())
        if ref_shape is None:
            ref_shape = shape
        elif shape[:3] != ref_shape[:3]:
            raise InvalidDataError(f"channel {c} has shape {shape}, channel 0 {ref_shape}", src)
    img: Any = nib.load(str(first))
    if test:
        if it.test_mask is None:
            return None
        m = load_label_map(it.test_mask)
        _check_grid(img.shape, img.affine, m, "mask", it.test_mask)
        arr = spec.remap(m.array) if spec is not None else m.array
        return write_label_like(arr, first, folder / "labelsTs" / f"{it.case_id}{FILE_ENDING}", ignore)
    assert it.load_label is not None
    arr, affine = it.load_label()
    label = SimpleNamespace(shape=arr.shape, affine=img.affine if affine is None else affine)
    _check_grid(img.shape, img.affine, label, "label", first)
    return write_label_like(arr, first, folder / "labelsTr" / f"{it.case_id}{FILE_ENDING}", ignore)


def _failed_lines(job: Any) -> list[str]:
    """``"CASE: message"`` for every failed case of `job` (`medwss.jobs.Job`)."""
    return [f"{cid}: {' '.join(row['message'].split())}" for cid, row in job.failures.items()]


def _write_dataset(
    items: Sequence[_Item],
    folder: Path,
    kind: str,
    num_classes: int | None,
    names: Sequence[str] | None,
    spec: LabelSpec | None,
    ignore_always: bool,
    progress: bool,
) -> ExportResult:
    """Two passes: read every label (classes, unlabelled voxels; a bad case is skipped), then write."""
    from medwss.jobs import FailureLog, Job

    result = ExportResult(folder)
    log = FailureLog(folder / "failures.csv", fresh=True)
    job = Job(log)
    if not items:
        raise InvalidDataError("no case to export", folder)
    channels = list(items[0].images)
    top, unknown_seen = 0, False
    ok: list[_Item] = []
    for it in tqdm(list(items), desc="check labels", disable=not progress, leave=False):
        with job.attempt(it.case_id, "labels", next(iter(it.images.values()), None)) as a:
            a.leave()  # counted once written
            high, unknown = _label_range(it, channels, spec)
            top, unknown_seen = max(top, high), unknown_seen or unknown
            ok.append(it)
    if not ok:
        raise InvalidDataError(f"no case could be exported ({'; '.join(_failed_lines(job)[:3])})", folder)
    k = num_classes if num_classes is not None else (spec.num_classes if spec is not None else max(top + 1, 2))
    if top >= k:
        raise ConfigError(f"labels reach {top} but num_classes is {k}: set num_classes (or classes) to cover them")
    ignore = k if (ignore_always or unknown_seen) else None
    result.num_classes, result.ignore = k, ignore
    rows: list[dict[str, str]] = []
    for it in tqdm(ok, desc="nnU-Net export", disable=not progress, leave=False):
        test = it.split == "test"
        label_path: Path | None = None
        with job.attempt(it.case_id, "export", next(iter(it.images.values()), None)):
            label_path = _write_case(it, folder, spec, ignore)
        if job.failed(it.case_id):
            sub = "Ts" if test else "Tr"
            for p in (folder / f"images{sub}").glob(f"{it.case_id}_[0-9][0-9][0-9][0-9]{FILE_ENDING}"):
                p.unlink(missing_ok=True)
            continue
        (result.test if test else result.training).append(it.case_id)
        rows.append(
            {
                "case_id": it.case_id,
                "patient_id": it.patient_id,
                "site": it.site,
                "modality": it.modality,
                "split": it.split,
                "channels": "|".join(channels),
                "labels": ("mask" if test else kind) if label_path is not None else "",
            }
        )
    result.skipped = _failed_lines(job)
    if not result.training:
        why = "; ".join(result.skipped[:3]) or f"all {len(result.test)} cases are in the test split"
        raise InvalidDataError(f"no training case could be exported ({why})", folder)
    _remove_stale(folder, result.training, result.test)
    modality = ok[0].modality
    meta = dataset_json(
        channel_names(channels, modality),
        _class_names(k, spec, names),
        ignore,
        len(result.training),
        name=folder.name.split("_", 1)[1] if "_" in folder.name else folder.name,
        description=f"exported by medwss from {kind} labels",
    )
    write_text(folder / CASES_CSV, _case_rows_csv(rows))
    by_split = {r["case_id"]: r["split"] for r in rows}
    val = [c for c in result.training if by_split[c] == "val"]
    train = [c for c in result.training if c not in val]
    if val and train:
        write_json(folder / SPLITS_JSON, [{"train": train, "val": val}])
    else:
        (folder / SPLITS_JSON).unlink(missing_ok=True)
    write_json(folder / DATASET_JSON, meta)
    result.failures = log.path if len(log) else None
    return result


def _remove_stale(folder: Path, training: Sequence[str], test: Sequence[str]) -> None:
    """Remove case files of an earlier export into the same folder that this one did not write (numTraining must match)."""
    for sub, keep in (("Tr", set(training)), ("Ts", set(test))):
        for kind, pattern in (
            ("images", re.compile(r"^(.*)_\d{4}\.nii\.gz$")),
            ("labels", re.compile(r"^(.*)\.nii\.gz$")),
        ):
            d = folder / f"{kind}{sub}"
            for p in d.glob("*.nii.gz") if d.is_dir() else []:
                m = pattern.match(p.name)
                if m and m.group(1) not in keep:
                    p.unlink(missing_ok=True)


def _spec(classes: str | LabelSpec | Mapping[str, Sequence[int] | int] | None) -> LabelSpec | None:
    return None if classes is None else label_spec(classes)


def export_manifest(
    manifest: str | Path,
    out: str | Path,
    dataset_id: int,
    name: str,
    labels: LabelSource = "scribble",
    classes: str | LabelSpec | Mapping[str, Sequence[int] | int] | None = None,
    num_classes: int | None = None,
    splits: Sequence[str] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export a manifest's cases as ``OUT/DatasetNNN_NAME`` (module docstring).

    Args:
        manifest: The manifest CSV.
        out: The nnU-Net raw folder (``nnUNet_raw``) the dataset folder is made in.
        dataset_id: nnU-Net dataset id (1..999).
        name: Dataset name.
        labels: ``scribble`` (sparse, the ignore label always declared) or ``mask`` (dense).
        classes: A `LabelSpec` (name or mapping) that maps the files' values to classes; None:
            values as they are.
        num_classes: Classes including background (default: the spec's, else the highest value + 1).
        splits: Splits to export (default all; ``test`` cases go to imagesTs/labelsTs with their mask).
        progress: Show progress bars.

    Raises:
        InvalidDataError: No case could be exported (each skipped case is listed in the result).
    """
    from medwss.data.labels import load_label_map
    from medwss.data.manifest import load_manifest

    if labels not in ("scribble", "mask"):
        raise ConfigError(f"labels must be scribble or mask, got {labels!r}")
    spec = _spec(classes)
    folder = Path(out) / dataset_folder_name(dataset_id, name)
    items: list[_Item] = []
    for case in load_manifest(manifest):
        if splits is not None and (case.split or "train") not in splits:
            continue
        split = case.split or "train"
        path = getattr(case, labels)

        def loader(p: Path | None = path, cid: str = case.case_id) -> tuple[np.ndarray, np.ndarray | None]:
            if p is None:
                raise InvalidDataError(f"case {cid} has no {labels} in the manifest")
            vol = load_label_map(p)
            return (spec.remap(vol.array) if spec is not None else vol.array), vol.affine

        items.append(
            _Item(
                case.case_id,
                dict(case.images),
                loader,
                case.patient_id,
                case.site,
                case.modality,
                split,
                case.mask if split == "test" else None,
            )
        )
    return _write_dataset(items, folder, labels, num_classes, None, spec, labels == "scribble", progress)


def export_al_state(
    state: str | Path, out: str | Path, dataset_id: int, name: str, progress: bool = True
) -> ExportResult:
    """Export the ingested slices of an active-learning state as ``OUT/DatasetNNN_NAME``.

    Every volume with at least one ingested slice is a training case: its image, and a label
    that holds the ingested slices at their canonical axial indices and the ignore label
    elsewhere (also where a scribble left pixels unlabelled).
    """
    from medwss.active.state import ALState
    from medwss.data.manifest import load_manifest
    from medwss.data.slicer import plan_slices
    from medwss.io.volumes import load_volume

    st = ALState(state)
    ids = sorted(st.annotations)
    if not ids:
        raise InvalidDataError("no ingested annotation in this state: nothing to export", st.folder)
    index = st.pool.index_of()
    by_image: dict[str, list[str]] = {}
    for sid in ids:
        by_image.setdefault(st.pool.refs[index[sid]].image, []).append(sid)
    meta: dict[str, tuple[str, str]] = {}
    try:
        source = json.loads((st.folder / "source.json").read_text()).get("manifest", "")
        if source:
            meta = {c.case_id: (c.site, c.modality) for c in load_manifest(source, check_files=False)}
    except (OSError, ValueError, InvalidDataError):
        meta = {}
    items: list[_Item] = []
    for image, sids in by_image.items():
        ref = st.pool.refs[index[sids[0]]]

        def loader(image: str = image, sids: list[str] = sids) -> tuple[np.ndarray, np.ndarray | None]:
            refs = [st.pool.refs[index[s]] for s in sids]
            geom = plan_slices(load_volume(image), indices=[r.index for r in refs])
            slices = np.stack([st.load_annotation(s)[0] for s in sids])
            return geom.paste(slices, label=True, fill=IGNORE), None

        site, modality = meta.get(ref.case_id, ("unknown", "CT"))
        items.append(
            _Item(ref.case_id, {"image": Path(image)}, loader, ref.patient_id, site, modality, ref.split or "train")
        )
    for it in items:  # annotated slices are training material whatever the pool's split
        if it.split == "test":
            it.split = "train"
    cfg = st.config
    spec = cfg.label_spec
    names = spec.names if spec is not None else None
    return _write_dataset(items, Path(out) / dataset_folder_name(dataset_id, name), "al-state", cfg.num_classes,
                          names, None, True, progress)  # fmt: skip


# --- import ----------------------------------------------------------------------------------------


@dataclass
class RawCase:
    """One case of a raw dataset: channel images (or one 4D file), label, and the folder it came from."""

    case_id: str
    images: list[Path]
    label: Path | None
    split: str


def _safe_channel(name: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_") or "ch"
    out, n = base, 2
    while out in used:
        out, n = f"{base}{n}", n + 1
    used.add(out)
    return out


def read_dataset_json(root: str | Path) -> dict[str, Any]:
    """``dataset.json`` of a raw dataset folder, as a dict (one line naming the file when it is not valid)."""
    path = require_file(Path(root) / DATASET_JSON)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"not valid JSON ({exc})", path) from exc
    if not isinstance(data, dict) or ("labels" not in data) or not ("channel_names" in data or "modality" in data):
        raise InvalidDataError("not an nnU-Net/MSD dataset.json (needs labels and channel_names or modality)", path)
    return data


def label_values(data: Mapping[str, Any]) -> tuple[dict[str, int], int | None]:
    """Class name → value, and the ignore value, from either ``labels`` layout (v2 name → value, MSD value → name).

    Region-based labels (a name → several values) keep their first value here; the files keep every value.
    """
    labels = data["labels"]
    out: dict[str, int] = {}
    path = "dataset.json labels"
    if not isinstance(labels, dict):
        raise InvalidDataError(f"{path} must be a mapping")
    for key, value in labels.items():
        if str(key).lstrip("-").isdigit() and isinstance(value, str):  # MSD / v1: "1": "edema"
            out[value] = int(key)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = int(value)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
            out[str(key)] = int(value[0])
        else:
            raise InvalidDataError(f"{path}: cannot read {key!r}: {value!r}")
    ignore = out.pop(IGNORE_NAME, None)
    if ignore is not None and any(v > ignore for v in out.values()):
        raise InvalidDataError(f"{path}: the ignore label {ignore} is not the highest value")
    return out, ignore


def _ending(data: Mapping[str, Any]) -> str:
    return str(data.get("file_ending") or FILE_ENDING)


def _channels(data: Mapping[str, Any]) -> list[str]:
    ch = data.get("channel_names") or data.get("modality") or {}
    if not isinstance(ch, dict) or not ch:
        raise InvalidDataError("dataset.json: channel_names (or modality) must be a non-empty mapping")
    return [str(ch[k]) for k in sorted(ch, key=lambda s: int(s))]


def _strip(name: str, ending: str) -> str:
    return name[: -len(ending)] if name.endswith(ending) else name


def list_cases(root: str | Path) -> tuple[list[RawCase], str]:
    """The cases of a raw dataset folder and its layout (``v2``, ``v1`` or ``msd``)."""
    root = Path(root)
    data = read_dataset_json(root)
    ending = _ending(data)
    n_ch = len(_channels(data))
    cases: list[RawCase] = []
    listed = data.get("dataset")
    if isinstance(listed, dict) and listed:  # nnU-Net v2 with explicit file lists: {case: {images: [...], label}}
        for cid, entry in listed.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("images"), list):
                raise InvalidDataError(f"dataset.json: dataset entry {cid!r} is not {{images: [...], label}}", root)
            lab = entry.get("label")
            cases.append(
                RawCase(str(cid), [root / str(p) for p in entry["images"]], root / str(lab) if lab else None, "train")
            )
        return cases, "v2"
    training = data.get("training")
    if isinstance(training, list) and training:
        layout = "msd"
        entries: list[tuple[Any, str]] = [(e, "train") for e in training]
        entries += [({"image": e}, "test") for e in data.get("test") or [] if isinstance(e, str)]
        for entry, split in entries:
            if not isinstance(entry, dict) or "image" not in entry:
                raise InvalidDataError(f"dataset.json: a training entry is not {{image, label}}: {entry!r}", root)
            img = root / str(entry["image"])
            cid = _strip(img.name, ending)
            if not img.exists() and (img.parent / f"{cid}_0000{ending}").exists():  # nnU-Net v1 Task layout
                layout = "v1"
                images = [img.parent / f"{cid}_{c:04d}{ending}" for c in range(n_ch)]
            else:
                images = [img]
            lab = root / str(entry["label"]) if entry.get("label") else None
            cases.append(RawCase(cid, images, lab, split))
        return cases, layout
    for sub, split in (("Tr", "train"), ("Ts", "test")):
        folder = root / f"images{sub}"
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.name.endswith(f"_0000{ending}"):
                continue
            cid = p.name[: -len(f"_0000{ending}")]
            images = [folder / f"{cid}_{c:04d}{ending}" for c in range(n_ch)]
            lab = root / f"labels{sub}" / f"{cid}{ending}"
            cases.append(RawCase(cid, images, lab if lab.exists() else None, split))
    if not cases:
        raise InvalidDataError(f"no imagesTr/<case>_0000{ending} file found", root)
    return cases, "v2"


def _guess_modality(channels: Sequence[str]) -> str:
    first = channels[0].strip().upper() if channels else ""
    if first == "CT":
        return "CT"
    if any(c.strip().upper() in _MR_NAMES or c.strip().upper().startswith("T1") for c in channels):
        return "MR"
    return "OT"


def _num_channels(path: Path) -> int:
    """Channels of an image file (1 for 3D; the 4th axis of a 4D NIfTI)."""
    import nibabel as nib

    if path.name.lower().endswith((".nii", ".nii.gz")):
        img: Any = nib.load(str(path))
        shape = img.shape
    else:
        from medwss.io.volumes import load_volume

        shape = load_volume(path, channels=True).shape
    return int(shape[3]) if len(shape) == 4 else 1


def import_dataset(
    root: str | Path,
    out: str | Path,
    label_column: Literal["auto", "mask", "scribble"] = "auto",
    split_channels: bool = False,
    modality: str | None = None,
    site: str | None = None,
    progress: bool = True,
) -> tuple[Path, list[str]]:
    """Write a manifest of an nnU-Net (v1, v2) or MSD raw dataset folder (module docstring).

    Args:
        root: The dataset folder (holding ``dataset.json``).
        out: The manifest CSV to write. Converted files go to ``<out stem>_files/`` beside it.
        label_column: Where labels go: ``auto`` (``scribble`` when dataset.json declares an ignore
            label, else ``mask``), or the column named.
        split_channels: Split 4D multi-channel images into one NIfTI per channel (else refused).
        modality: The manifest's modality (default: CT when the first channel is named CT, MR for
            MR channel names, else OT).
        site: The manifest's site (default: the dataset's name).
        progress: Show a progress bar.

    Returns:
        The manifest path and one message per skipped case.

    Raises:
        InvalidDataError: No case could be read (the message gives the first reasons).
    """
    from medwss.data.labels import save_label_map
    from medwss.data.manifest import case_id_problem, write_manifest
    from medwss.io.volumes import load_volume, save_nifti
    from medwss.jobs import CASE_ERRORS

    root, out = Path(root), Path(out)
    data = read_dataset_json(root)
    cases, layout = list_cases(root)
    channels = _channels(data)
    _, ignore = label_values(data)
    column = label_column if label_column != "auto" else ("scribble" if ignore is not None else "mask")
    used: set[str] = set()
    cols = ["image"] if len(channels) == 1 else [f"image_{_safe_channel(c, used)}" for c in channels]
    mod = modality or _guess_modality(channels)
    name = str(data.get("name") or root.name)
    files = out.parent / f"{out.name.split('.')[0]}_files"
    known: dict[str, dict[str, str]] = {}
    if (root / CASES_CSV).exists():
        with open(root / CASES_CSV, newline="", encoding="utf-8") as fh:
            known = {r["case_id"]: r for r in csv.DictReader(fh)}
    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    for case in tqdm(cases, desc=f"import {layout}", disable=not progress, leave=False):
        try:
            problem = case_id_problem(case.case_id)
            if problem:
                raise InvalidDataError(problem)
            for p in case.images:
                require_file(p)
            images: list[Path] = case.images
            if len(case.images) == 1 and len(channels) > 1:
                n = _num_channels(case.images[0])
                if n != len(channels):
                    raise InvalidDataError(
                        f"image has {n} channel(s), dataset.json names {len(channels)}", case.images[0]
                    )
                if not split_channels:
                    raise InvalidDataError(
                        f"4D image with {n} channels: rerun with --split-channels to write one file per channel",
                        case.images[0],
                    )
                vol = load_volume(case.images[0], channels=True)
                images = []
                for c, col in enumerate(cols):
                    dst = files / f"{case.case_id}_{col[len('image_') :]}.nii.gz"
                    save_nifti(vol.array[..., c], dst, vol.affine)
                    images.append(dst)
            elif len(case.images) == 1 and _num_channels(case.images[0]) > 1:
                raise InvalidDataError("4D image but dataset.json names one channel", case.images[0])
            info = known.get(case.case_id, {})
            split = info.get("split") or case.split
            row: dict[str, object] = {
                "case_id": case.case_id,
                "patient_id": info.get("patient_id") or case.case_id,
                "site": info.get("site") or site or name,
                "modality": info.get("modality") or mod,
                **{col: p for col, p in zip(cols, images, strict=True)},
                "split": split,
            }
            if case.label is not None:
                require_file(case.label)
                dense = case.split == "test" or info.get("labels") == "mask"
                target = "mask" if dense and label_column == "auto" else column
                if ignore is not None:
                    lab = load_volume(case.label)
                    arr = np.asarray(lab.array).astype(np.int64)
                    if (arr < 0).any() or (arr > ignore).any():
                        raise InvalidDataError(f"label values outside 0..{ignore}", case.label)
                    unknown = arr == ignore
                    if target == "mask" and not unknown.any():
                        row["mask"] = case.label
                    else:
                        arr[unknown] = IGNORE
                        dst = files / f"{case.case_id}_{target}.nii.gz"
                        save_label_map(arr, dst, lab.affine)
                        row[target] = dst
                else:
                    row[target] = case.label
            rows.append(row)
        except CASE_ERRORS as exc:
            msg = " ".join(str(exc).split())
            skipped.append(msg if str(root) in msg or str(files) in msg else f"{case.case_id}: {msg}")
    if not rows:
        raise InvalidDataError(f"no case could be imported ({'; '.join(skipped[:3])})", root)
    return write_manifest(rows, out), skipped
