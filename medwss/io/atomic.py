"""Atomic writes: write to a temporary name beside the target, then rename.

JSON that medwss writes is strict (RFC 8259): `write_json` and `dumps_json` write NaN and infinite numbers
as ``null``; every JSON file goes through them (never `json.dumps` into `write_text`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` on success.

    The temporary name keeps the target's suffixes, so writers that dispatch on the extension
    (``.nii.gz``, ``.tif``) behave as for the target. On error the temporary file is removed and
    the target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give them the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | Path, text: str) -> Path:
    """Write `text` to `target` atomically and return the target path (JSON goes through `write_json`)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types: NaN and infinite floats become None; NumPy scalars/arrays and paths become
    numbers, lists and strings (recursively)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) and k is not None else k: to_jsonable(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    tolist = getattr(value, "tolist", None)  # NumPy arrays and scalars, torch tensors
    if callable(tolist):
        return to_jsonable(tolist())
    return str(value)


def dumps_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `value` (see `to_jsonable`); ``allow_nan=False`` after the conversion."""
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False)


def write_json(target: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Write `value` as strict JSON to `target` atomically (NaN/inf as null) and return the target path."""
    return write_text(target, dumps_json(value, indent) + "\n")


def remove_stale_temps(folder: str | Path, older_than_s: float = 3600.0) -> list[Path]:
    """Remove temporary files `atomic_path` left behind (a process killed mid-write) in `folder`.

    Only names of the form ``.<name>.<random>.tmp<suffixes>`` untouched for `older_than_s` seconds
    are removed, so a concurrent writer's file in progress is kept.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for p in folder.glob(".*.tmp*"):
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than_s:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def clean_stale_temps(folder: str | Path, started: float | None = None, grace_s: float = 120.0) -> list[Path]:
    """Remove the temporary files of `atomic_path` in `folder` and its subfolders left by killed writers.

    Called by a job on start: a temporary file last written before the job started (`started`,
    a `time.time()`; default now) by more than `grace_s` seconds belongs to no live writer (a live
    one writes its file within seconds of creating it) and is removed; newer ones, perhaps of a
    concurrent process sharing the folder, are kept.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = (time.time() if started is None else started) - grace_s
    removed = []
    for p in folder.rglob(".*.tmp*"):
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed
