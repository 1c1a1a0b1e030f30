"""Run records: every run writes its resolved config, versions, seed and metrics beside its outputs."""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from medwss import __version__
from medwss.io.atomic import write_json, write_text

_PACKAGES = (
    "numpy",
    "torch",
    "monai",
    "nibabel",
    "SimpleITK",
    "pydicom",
    "openslide-python",
    "openslide-bin",
    "tifffile",
)


def versions() -> dict[str, str]:
    """Versions of Python, medwss and the libraries whose behaviour shapes the results."""
    out = {"python": sys.version.split()[0], "medwss": __version__, "platform": platform.platform()}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def write_run_record(
    out_dir: str | Path, command: str, config: dict[str, Any], seed: int | None = None, metrics: dict | None = None
) -> Path:
    """Write ``run.json`` (command, config, seed, versions, metrics, time) into `out_dir`, atomically."""
    record = {
        "command": command,
        "config": config,
        "seed": seed,
        "metrics": metrics or {},
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_json(Path(out_dir) / "run.json", record)


def write_results(out_dir: str | Path, name: str, record: dict[str, Any], markdown: str, echo: bool = True) -> Path:
    """Write a benchmark's ``<name>.json`` and ``<name>.md`` into `out_dir` (atomically); print the table."""
    out = Path(out_dir)
    write_json(out / f"{name}.json", record)
    write_text(out / f"{name}.md", markdown)
    if echo:
        sys.stdout.write(markdown)
    return out / f"{name}.json"
