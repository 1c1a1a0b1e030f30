"""Apply a network trained by `medwss pseudo agmm|dupl` to new volumes: ``medwss pseudo predict``.

The model file (``model.pt``, kind ``pseudo_agmm`` — a `TinyFCN` — or ``pseudo_dupl`` — the two
students, averaged) records the config it was trained with (``meta["train_config"]``; its
`PseudoConfig` part, the slicing, is what is read here): the cases are sliced as in training (`medwss.pseudo.volumes.slice_case`: first channel, axial slices on
the canonical grid whatever the stored order, in-plane ``downsample``, the training ``window``), every
slice is segmented (argmax of the class probabilities; `IGNORE` where the top probability is below
`confidence`, 0 = never), and the slices are pasted back onto the source grid. Outputs per case,
through `medwss.io.seg_export.write_outputs`: ``<case_id>.nii.gz`` (int16 label map, source grid and
affine; with ``slicer`` a colour table ``<case_id>.ctbl`` beside it) and, with ``dicom-seg`` on a
DICOM series, ``<case_id>_seg.dcm``. Segment names are the model's classes.

Scribble segmenters (``medwss scribble train``, kind ``segmenter``) predict with
``medwss scribble predict`` instead; this module refuses them in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.labels import IGNORE, LabelSpec
from medwss.data.manifest import Case, case_path
from medwss.errors import InvalidDataError
from medwss.jobs import Job

KINDS = ("pseudo_agmm", "pseudo_dupl")


def load_pseudo_model(path: str | Path) -> tuple[torch.nn.Module, Any, list[str]]:
    """The network of a ``pseudo agmm|dupl`` model file (eval mode, CPU), its `PseudoConfig` and class names.

    Raises:
        UnsupportedFormatError: Another kind of model file (the message says which command predicts with it).
        InvalidDataError: The file records no training config.
    """
    from medwss.errors import UnsupportedFormatError
    from medwss.pseudo.config import PseudoConfig
    from medwss.train import load_model, read_model

    record = read_model(path)
    if record.kind not in KINDS:
        hint = "; use `medwss scribble predict`" if record.kind == "segmenter" else ""
        raise UnsupportedFormatError(
            f"a {record.kind!r} model file, not one of `medwss pseudo agmm|dupl` ({', '.join(KINDS)}){hint}",
            record.path,
        )
    model, record = load_model(path, kind=record.kind)
    train = record.meta.get("train_config")
    if not isinstance(train, dict):
        raise InvalidDataError("model file records no training config (meta 'train_config')", path)
    # the slicing part of the method's config (files written before the per-method configs hold every field)
    cfg = PseudoConfig.model_validate({k: v for k, v in train.items() if k in PseudoConfig.model_fields})
    return model, cfg, list(record.meta.get("classes") or cfg.classes())


@torch.no_grad()
def _slice_labels(model: torch.nn.Module, images: Sequence[np.ndarray], confidence: float, device: torch.device):  # noqa: ANN202
    out = []
    for img in images:
        x = torch.from_numpy(np.asarray(img, np.float32))[None].to(device)
        y = model(x)
        p = y if getattr(model, "students", None) is not None else torch.softmax(y, dim=1)  # StudentPair: probs
        conf, lab = p[0].max(dim=0)
        lab[conf < confidence] = IGNORE
        out.append(lab.cpu().numpy().astype(np.int64))
    return out


def predict_volumes(
    cases: Sequence[Case],
    model_path: str | Path,
    out: str | Path,
    formats: Sequence[str] = ("nifti",),
    *,
    confidence: float = 0.0,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    job: Job | None = None,
) -> dict[str, Any]:
    """Write every case's label map into `out` (module docstring); a case that fails is skipped and reported.

    Args:
        cases: Cases with an image (``medwss.io.folder.cases_from_folder``, or a manifest's).
        model_path: ``model.pt`` of ``medwss pseudo agmm`` or ``dupl``.
        out: Output folder (``<case_id>.nii.gz`` and the other formats' files).
        formats: Any of ``nifti`` (always), ``slicer``, ``dicom-seg``.
        confidence: Top probability below which a voxel is `IGNORE` (-1); 0 labels every voxel.
        device: Where the network runs (``auto``: CUDA when present).
        overwrite: Redo cases whose ``<case_id>.nii.gz`` exists.
        job: The `medwss.jobs.Job` the cases run through (stage ``predict``; default one without a log file).

    Returns:
        ``{"done", "skipped", "failed", "notes", "classes"}``: counts of this call, its failure rows
        (`medwss.jobs.FIELDS`), notes per case and the model's class names.
    """
    from medwss.io.seg_export import write_outputs
    from medwss.io.volume import Volume
    from medwss.pseudo.volumes import slice_case
    from medwss.train.device import resolve_device

    model, cfg, classes = load_pseudo_model(model_path)
    dev = resolve_device(device)
    model = model.to(dev)
    spec = LabelSpec.from_classes({n: c for c, n in enumerate(classes) if c})
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    fmts = tuple(dict.fromkeys(("nifti", *formats)))
    job = job if job is not None else Job(None)
    notes: list[dict[str, str]] = []

    def one(case: Case) -> None:
        target = case_path(folder, case.case_id, ".nii.gz")
        try:
            sc = slice_case(case, cfg)
            labels = sc.to_source(_slice_labels(model, sc.images, confidence, dev))
            ref = Volume(labels, sc.affine, path=str(case.image))
            mine = fmts
            if "dicom-seg" in fmts and not _dicom_source(case.image):
                mine = tuple(f for f in fmts if f != "dicom-seg")
                notes.append({"case_id": case.case_id, "note": "not a DICOM series: no DICOM SEG written"})
            write_outputs(ref, labels, spec, folder, mine, name=case.case_id, source=case.image)
        except BaseException:
            target.unlink(missing_ok=True)  # a rerun tries the case again
            raise

    job.run(
        cases, one, stage="predict", progress=progress, desc="predict",
        is_done=lambda c: not overwrite and case_path(folder, c.case_id, ".nii.gz").exists(),
    )  # fmt: skip
    ids = {c.case_id for c in cases}
    done = sum(c.case_id in job.done_ids for c in cases)
    skipped = sum(c.case_id in job.skipped_ids for c in cases)
    failed = [row for cid, row in job.failures.items() if cid in ids]
    return {"done": done, "skipped": skipped, "failed": failed, "notes": notes, "classes": classes}


def _dicom_source(path: Path) -> bool:
    """A DICOM series folder or DICOM file (what a DICOM SEG can reference)."""
    from medwss.io.dicom import is_dicom

    return path.is_dir() or is_dicom(path)
