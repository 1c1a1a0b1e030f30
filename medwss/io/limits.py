"""Limits checked before allocating: what a file *claims* (header sizes, tile sizes, grid shapes) is
compared with a cap before any array of that size is made, so a tiny hostile file cannot ask for
gigabytes.

Every cap has a default here and an environment variable that overrides it (read at each check, so
a run can raise one without code changes):

=============================  ===============================  =====================================
limit                          default                          environment variable
=============================  ===============================  =====================================
decompressed volume size       2 GiB                            ``MEDWSS_MAX_VOLUME_BYTES``
voxels of one tile or patch    4,194,304 (2048², 161³)          ``MEDWSS_MAX_TILE_VOXELS``
tiles per case (whole grid)    2,097,152                        ``MEDWSS_MAX_TILES``
cells of a bag's tile grid     16,777,216                       ``MEDWSS_MAX_GRID_CELLS``
one dataset of a feature bag   4 GiB                            ``MEDWSS_MAX_BAG_BYTES``
|coordinate| in a bag or tiles 2^24 pixels or voxels             ``MEDWSS_MAX_COORD``
config file size               1 MiB                            ``MEDWSS_MAX_CONFIG_BYTES``
=============================  ===============================  =====================================

Microns per pixel outside ``MPP_RANGE`` (0.05–100 µm/px, for both the slide and the target) is
refused unless forced (`medwss tile --force-mpp`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from medwss.errors import InvalidDataError

DEFAULTS: dict[str, int] = {
    "MEDWSS_MAX_VOLUME_BYTES": 2**31,
    "MEDWSS_MAX_TILE_VOXELS": 2**22,
    "MEDWSS_MAX_TILES": 2**21,
    "MEDWSS_MAX_GRID_CELLS": 2**24,
    "MEDWSS_MAX_BAG_BYTES": 2**32,
    "MEDWSS_MAX_COORD": 2**24,
    "MEDWSS_MAX_CONFIG_BYTES": 2**20,
}
MPP_RANGE = (0.05, 100.0)
"""Plausible microns per pixel of a slide level 0 and of a tiling target."""
GZIP_MAX_RATIO = 1100
"""Deflate cannot expand more than ~1032:1: a ``.gz`` claiming more than this times its size is truncated or forged."""


class LimitExceededError(InvalidDataError):
    """A file claims a size over a limit (the message names the claim, the limit and how to raise it)."""


def limit(name: str) -> int:
    """The current value of a cap: the environment variable `name` if set (an integer), else the default."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return DEFAULTS[name]
    try:
        value = int(float(raw))
    except ValueError as exc:
        raise InvalidDataError(f"environment variable {name}={raw!r} is not a number") from exc
    return max(value, 1)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def check_count(what: str, count: int, name: str, path: str | Path | None) -> None:
    """Raise `LimitExceededError` if `count` is over the cap `name`."""
    cap = limit(name)
    if count > cap:
        raise LimitExceededError(f"{what} is {count:,}, over the limit of {cap:,} (set {name} to raise it)", path)


def check_bytes(what: str, shape: Sequence[int], itemsize: int, name: str, path: str | Path | None) -> int:
    """Raise `LimitExceededError` if an array of `shape` and `itemsize` would be over the byte cap `name`.

    Returns:
        The claimed size in bytes.
    """
    dims = [int(s) for s in shape]
    if any(d < 0 for d in dims):
        raise InvalidDataError(f"{what} has a negative size {shape_text(dims)}", path)
    nbytes = math.prod(dims) * int(itemsize)
    cap = limit(name)
    if nbytes > cap:
        raise LimitExceededError(
            f"{what} claims {shape_text(dims)} ({human_bytes(nbytes)}), over the {human_bytes(cap)} limit "
            f"(set {name} to raise it)",
            path,
        )
    return nbytes


def check_compressed(claimed_bytes: int, path: Path) -> None:
    """Refuse a gzip file whose header claims more data than its size can hold (truncated or forged)."""
    if not path.name.lower().endswith(".gz"):
        return
    size = path.stat().st_size
    if claimed_bytes > GZIP_MAX_RATIO * max(size, 1):
        raise LimitExceededError(
            f"header claims {human_bytes(claimed_bytes)} of data but the compressed file is only {human_bytes(size)} "
            f"(more than gzip's ~1000:1 can hold): truncated or forged",
            path,
        )


def check_mpp(value: float, what: str, path: str | Path | None, force: bool = False) -> None:
    """Refuse microns per pixel outside `MPP_RANGE` (or not finite) unless `force`."""
    lo, hi = MPP_RANGE
    if not math.isfinite(value) or value <= 0:
        raise InvalidDataError(f"{what} {value} µm/px is not a positive number", path)
    if not force and not lo <= value <= hi:
        raise LimitExceededError(
            f"{what} {value:g} µm/px is outside the plausible {lo:g}–{hi:g} µm/px (a 72-dpi TIFF reads as 352.8); "
            f"pass the right value with --mpp-override, or --force-mpp to use it anyway",
            path,
        )
