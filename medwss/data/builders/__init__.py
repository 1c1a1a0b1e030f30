"""Manifest builders: scan a local copy of a public dataset, laid out as distributed, into manifest rows.

Each dataset module registers one builder ``build(root: Path) -> list[dict]`` under its name with
``@register(name, layout)``; the `BUILDERS` registry imports every such module of this package on
its first lookup, so a new dataset is one file here.
Cases with missing mandatory files are skipped with a warning on the ``medwss.data.builders``
logger; the rest of the dataset is still built. Rows come in a deterministic (sorted) order.

Example:
    >>> from medwss.data.builders import build_manifest
    >>> build_manifest("mosmed", "/data/COVID19_1110", "manifests/mosmed.csv")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from medwss.data.builders._common import BUILDERS, LAYOUTS, Builder, Row, register
from medwss.data.manifest import write_manifest
from medwss.errors import InvalidDataError, require_file

__all__ = ["BUILDERS", "Builder", "Row", "build_manifest", "build_rows", "list_datasets", "register"]


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(BUILDERS)


def build_rows(dataset: str, root: str | Path) -> list[Row]:
    """Run the builder of `dataset` on `root` and return its manifest rows.

    Raises:
        UnknownNameError: (a `ConfigError`) `dataset` is not registered (the message lists those that are).
        FileNotFound: `root` does not exist.
        InvalidDataError: `root` is not a folder, or holds no case in the expected layout.
    """
    name = dataset.strip().lower()
    build = BUILDERS.get(name)
    root = require_file(root)
    if not root.is_dir():
        raise InvalidDataError(f"{name} needs the dataset's root folder, not a file", root)
    rows = build(root)
    if not rows:
        raise InvalidDataError(f"no {name} cases found; expected the layout {LAYOUTS[name]}", root)
    return rows


def build_manifest(dataset: str, root: str | Path, out: str | Path) -> Path:
    """Build the manifest of `dataset` found under `root` and write it to `out` (atomically).

    Args:
        dataset: A name from `list_datasets()` (case-insensitive).
        root: The dataset's root folder, as unpacked from its distribution.
        out: The manifest CSV to write; paths under its folder are written relative to it.

    Returns:
        The path of the written manifest.

    Raises:
        MedwssError: As `build_rows`.
    """
    return write_manifest(build_rows(dataset, root), out)
