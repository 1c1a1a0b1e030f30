"""Helpers shared by the phantom generators: seeding, smooth random fields, shapes, splits, progress.

Seeding: every case draws from its own generator, derived from ``(seed, kind, stream, index)`` with
`numpy.random.SeedSequence`, so case ``i`` is identical whatever the number of cases generated.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from medwss.data.splits import DEFAULT_FRACTIONS, assign_patients
from medwss.io.atomic import atomic_path
from medwss.registry import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel

T = TypeVar("T")
OptionsT = TypeVar("OptionsT", bound="BaseModel")


class PhantomGenerator(Protocol):
    """A phantom kind: ``generate(out, n=, seed=, scale=, progress=) -> manifest path``.

    Contract: writes `n` cases (one patient each) and ``out/manifest.csv``, the same files for the same
    `seed` (case ``i`` whatever `n`, see `case_rng`), `scale` multiplying the image size; kinds with
    difficulty settings also take ``options=`` (`medwss.data.phantoms.generate` passes it only to them).
    `tests/test_contracts.py` checks every registered generator takes these keywords; the phantom
    tests check the files.
    """

    def __call__(
        self, out: str | Path, n: int = ..., seed: int = ..., scale: float = ..., progress: bool = ...
    ) -> Path: ...


Generator = PhantomGenerator
"""The former name of `PhantomGenerator`."""

PHANTOMS: Registry[Generator] = Registry("phantom kind", package="medwss.data.phantoms", marker="register_phantom")
"""Every phantom generator; a module of `medwss.data.phantoms` that calls `register_phantom` is found on first lookup."""


def register_phantom(kind: str) -> Callable[[Generator], Generator]:
    """Register a generator ``(out, n, seed, scale, progress) -> manifest path`` as the phantom `kind`."""
    return PHANTOMS.register(kind)


CASE_STREAM = 0
LABEL_STREAM = 1
SPLIT_STREAM = 2


def _kind_code(kind: str) -> int:
    return zlib.crc32(kind.encode("utf-8"))


def case_rng(seed: int, kind: str, index: int, stream: int = CASE_STREAM) -> np.random.Generator:
    """The random generator of one case, independent of how many cases are generated.

    Args:
        seed: The run's seed (non-negative).
        kind: Phantom kind (``wsi``, ``ct``, ``mri``): different kinds draw different numbers.
        index: Case number.
        stream: Independent stream of the same case (case content, label draw, ...).
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(_kind_code(kind), int(stream), int(index)))
    return np.random.default_rng(ss)


def balanced_label(seed: int, kind: str, index: int) -> int:
    """Binary label of case `index`: cases come in pairs (0, 1), (2, 3), ... holding one positive each.

    Which member of a pair is positive is drawn from ``(seed, pair)``, so about half the cases are
    positive, there is at least one of each class as soon as two cases exist, and the label of a
    case does not depend on the number of cases.
    """
    first = int(case_rng(seed, kind, index // 2, LABEL_STREAM).integers(2))
    return int(index % 2 == first)


def site_of(index: int, sites: Sequence[str]) -> str:
    """Site of case `index`: label pairs (see `balanced_label`) taken in turn by the sites.

    Both cases of a pair go to the same site, so every site holds as many positives as negatives
    and the site never predicts the label; every site appears once ``n >= 2 * len(sites) - 1``.
    """
    return sites[(index // 2) % len(sites)]


def assign_splits(
    patient_ids: Sequence[str], seed: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Patient-level train/val/test assignment, deterministic from `seed` (`medwss.data.splits`).

    The phantoms' own split stream of `seed` drives `assign_patients`, so the split does not share
    random numbers with the cases' content; the sizes follow `part_sizes` (val and test at least
    one patient each from three patients on; with two: one train, one test; with one: train).

    Args:
        patient_ids: Patients (duplicates are ignored).
        seed: The run's seed.
        fractions: Train, val and test fractions.

    Returns:
        Split name of every patient.
    """
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(SPLIT_STREAM,)))
    return assign_patients(patient_ids, fractions, rng)


def _interpolation_matrix(n_out: int, cell: float, n_coarse: int) -> np.ndarray:
    """Rows of Gaussian weights mapping `n_coarse` coarse nodes (spaced `cell` voxels) to `n_out` voxels."""
    pos = (np.arange(n_out) + 0.5) / cell + 1.0  # voxel centres in coarse-node units
    d = pos[:, None] - np.arange(n_coarse)[None, :]
    weights = np.exp(-0.5 * (d / 0.75) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def add_splits(rows: list[dict[str, object]], seed: int) -> None:
    """Set the ``split`` of every manifest row from its ``patient_id`` with `assign_splits`, in place."""
    splits = assign_splits([str(r["patient_id"]) for r in rows], seed)
    for r in rows:
        r["split"] = splits[str(r["patient_id"])]


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], cell: float | Sequence[float]) -> np.ndarray:
    """A smooth random field of zero mean and unit standard deviation.

    White noise on a coarse grid (one node per `cell` voxels along each axis) is interpolated onto
    `shape` with separable Gaussian weights (fast: one small matrix product per axis).

    Args:
        rng: Random generator.
        shape: Output shape (any number of dimensions).
        cell: Correlation length in voxels, one per axis or one for all.

    Returns:
        float32 array of `shape`.
    """
    shape = tuple(int(s) for s in shape)
    cells = np.broadcast_to(np.asarray(cell, dtype=np.float64), (len(shape),))
    coarse_shape = tuple(max(2, int(np.ceil(s / c)) + 3) for s, c in zip(shape, cells, strict=True))
    field = rng.standard_normal(coarse_shape)
    for axis, (s, c) in enumerate(zip(shape, cells, strict=True)):
        matrix = _interpolation_matrix(s, float(c), coarse_shape[axis])
        field = np.moveaxis(np.tensordot(matrix, np.moveaxis(field, axis, 0), axes=(1, 0)), 0, axis)
    field = field.astype(np.float32)
    field -= field.mean()
    std = field.std()
    if std > 0:
        field /= std
    return field


def world_grid(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of every voxel centre of a 3D grid.

    Args:
        shape: Grid shape ``(I, J, K)``.
        affine: 4×4 voxel-to-world matrix.

    Returns:
        x, y, z float32 arrays of `shape`.
    """
    i, j, k = (np.arange(s, dtype=np.float64) for s in shape[:3])
    a = np.asarray(affine, dtype=np.float64)
    out = []
    for row in range(3):
        w = a[row, 0] * i[:, None, None] + a[row, 1] * j[None, :, None] + a[row, 2] * k[None, None, :] + a[row, 3]
        out.append(np.broadcast_to(w, tuple(shape[:3])).astype(np.float32))
    return out[0], out[1], out[2]


def ellipsoid(
    coords: Sequence[np.ndarray],
    center: npt.ArrayLike,
    radii: npt.ArrayLike,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised radius ``r`` of points with respect to an ellipsoid (inside where ``r < 1``).

    Works in 2D or 3D: pass as many coordinate arrays as dimensions.

    Args:
        coords: One coordinate array per axis (same shape), e.g. from `world_grid`.
        center: Ellipsoid centre, same units as `coords`.
        radii: Semi-axes along the ellipsoid's own axes.
        rotation: Matrix whose columns are the ellipsoid axes in the coordinate frame; identity if None.

    Returns:
        float32 array of normalised radii (``< 1`` inside).
    """
    d = len(coords)
    rot = np.eye(d) if rotation is None else np.asarray(rotation, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    rel = [np.asarray(c, dtype=np.float32) - np.float32(center[a]) for a, c in enumerate(coords)]
    r2 = np.zeros(np.shape(rel[0]), dtype=np.float32)
    for axis in range(d):
        u = sum(np.float32(rot[a, axis]) * rel[a] for a in range(d))
        r2 += (u / np.float32(radii[axis])) ** 2
    return np.sqrt(r2)


def rotation_2d(angle: float) -> np.ndarray:
    """2×2 rotation matrix of `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def rotation_z(angle: float) -> np.ndarray:
    """3×3 rotation of `angle` radians about the third axis."""
    r = np.eye(3)
    r[:2, :2] = rotation_2d(angle)
    return r


def centered_affine(shape: Sequence[int], spacing: npt.ArrayLike, center: npt.ArrayLike) -> np.ndarray:
    """RAS affine of an axis-aligned grid whose centre lies at `center` (mm).

    Args:
        shape: Grid shape.
        spacing: Voxel size in mm along each axis.
        center: World position of the grid centre, ``(shape - 1) / 2`` in voxel indices.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = np.asarray(center, dtype=np.float64) - (np.asarray(shape[:3], dtype=np.float64) - 1) / 2 * sp
    return affine


def scaled_shape(shape: Sequence[int], scale: float, minimum: int = 4) -> tuple[int, ...]:
    """`shape` multiplied by `scale`, rounded, at least `minimum` along each axis."""
    return tuple(max(minimum, int(round(s * scale))) for s in shape)


def track(iterable: Iterable[T], total: int, desc: str, enabled: bool = True) -> Iterator[T]:
    """Wrap `iterable` in a tqdm progress bar when `enabled`."""
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, unit="case", disable=not enabled)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a 2D uint8 (or RGB) array as PNG, atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return path


def check_kind_args(n: int, seed: int, scale: float) -> None:
    """Validate the arguments every generator shares; raise `MedwssError` with the cause."""
    from medwss.errors import MedwssError

    if n < 1:
        raise MedwssError(f"n must be at least 1, got {n}")
    if seed < 0:
        raise MedwssError(f"seed must be non-negative, got {seed}")
    if not scale > 0:
        raise MedwssError(f"scale must be positive, got {scale}")


def parse_options(cls: type[OptionsT], options: OptionsT | Mapping[str, object] | None) -> OptionsT:
    """`options` as the generator's options class `cls` (a pydantic config); a dict is validated.

    Raises:
        ConfigError: an unknown key or a bad value, named in one line.
    """
    from pydantic import ValidationError

    from medwss.errors import ConfigError

    if isinstance(options, cls):
        return options
    try:
        return cls(**dict(options or {}))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"phantom options ({cls.__name__}): {problems}") from None
