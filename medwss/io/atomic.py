"""Atomic writes: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


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
    """Write `text` to `target` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


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
