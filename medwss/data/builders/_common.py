"""Shared pieces of the dataset builders: the registry, skip warnings and file look-ups."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from medwss.registry import Registry

Row = dict[str, object]


class DatasetBuilder(Protocol):
    """A dataset builder: ``build(root) -> rows`` of the manifest of the public dataset laid out under `root`.

    Contract: one row per case (``case_id``, ``image``... as `medwss.data.manifest` reads them), a case
    it cannot use skipped with `skip` (logged), never the whole build; the layout it expects is the
    ``layout`` line given to `register`. `tests/test_contracts.py` checks every registered builder
    takes one positional argument; tests/data/test_builders.py builds them from tiny fake layouts.
    """

    def __call__(self, root: Path, /) -> list[Row]: ...


Builder = DatasetBuilder
"""The former name of `DatasetBuilder`."""

BUILDERS: Registry[Builder] = Registry("dataset", package="medwss.data.builders", marker="@register(")
"""Every dataset builder; a module of `medwss.data.builders` decorated with `register` is found on first lookup."""
LAYOUTS: dict[str, str] = {}

log = logging.getLogger("medwss.data.builders")

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def register(name: str, layout: str) -> Callable[[Builder], Builder]:
    """Register a builder under `name`.

    Args:
        name: Dataset name users pass on the command line.
        layout: One-line description of the folder layout the builder expects, for error messages.
    """

    def decorate(fn: Builder) -> Builder:
        BUILDERS.register(name, fn)
        LAYOUTS[name] = layout
        return fn

    return decorate


def skip(where: str | Path, reason: str) -> None:
    """Log that a case is skipped (or degraded) and why; the build goes on."""
    log.warning("%s: %s", where, reason)


def first_existing(paths: Iterable[Path]) -> Path | None:
    """The first path in `paths` that exists, or ``None``."""
    return next((p for p in paths if p.exists()), None)


def find_nifti(folder: Path, stem: str) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``, whichever exists first, or ``None``."""
    return first_existing(folder / f"{stem}{s}" for s in NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str | None:
    """The name of a NIfTI file without ``.nii.gz``/``.nii``, or ``None`` for other files."""
    for s in NIFTI_SUFFIXES:
        if path.name.endswith(s):
            return path.name[: -len(s)]
    return None


def subdirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder` sorted by name (none when `folder` is absent)."""
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name) if folder.is_dir() else []


def files(folder: Path, pattern: str = "*") -> list[Path]:
    """Files of `folder` matching `pattern`, sorted by name (none when `folder` is absent)."""
    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: p.name) if folder.is_dir() else []
