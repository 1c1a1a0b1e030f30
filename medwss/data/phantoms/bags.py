"""Context phantom bags: feature-level bags in which instance pooling fails by construction.

Each case is a tissue region on a tile grid; every tile holds a C-dimensional feature vector
(a mixture of tissue prototypes plus Gaussian noise). Positive cases hold one *lesion*: a
connected cluster of tiles carrying a tumour signature. **Every** case, negatives included, also
holds a few isolated *look-alike* tiles that carry the same signature at least as strongly. So the
most tumour-like tile of a case says nothing about its label (max pooling sits near chance), the
count of tumour-like tiles overlaps between the classes, and only context (a tumour-like tile
among tumour-like neighbours) separates them — what INSIGHT's context module is for.

Bags are written in CLAM's layout (``features`` N×C, ``coords`` N×2 level-0 pixels, with
``patch_size``/``patch_level`` on ``coords``) plus a ``truth`` dataset (1 on lesion tiles), so
they exercise the "bags without slides" path; the manifest has no image column.

Example:
    >>> from medwss.data.phantoms.bags import BagPhantomConfig, make_bag
    >>> case = make_bag(0, BagPhantomConfig(), label=1)
    >>> case.features.shape[1], int(case.truth.sum()) > 0
    (32, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field
from tqdm import tqdm

from medwss.config import StrictConfig
from medwss.errors import ConfigError

PATCH_SIZE = 256
"""Level-0 pixels per tile in the written coordinates (nominal: the bags have no slide)."""


class BagPhantomConfig(StrictConfig):
    """What `medwss phantom bags` generates (configs/phantom_bags.yaml)."""

    n: int = Field(240, ge=4)
    """Cases (one patient each), half positive."""
    seed: int = 0
    """Random seed."""
    dim: int = Field(32, ge=4)
    """Feature channels C."""
    grid: int = Field(20, ge=8)
    """Side of the tile grid; the tissue is an ellipse inside it."""
    cluster: tuple[int, int] = (6, 16)
    """Lesion size range in tiles (positive cases)."""
    lookalikes: tuple[int, int] = (8, 24)
    """Isolated tumour-like tiles drawn per case; positive cases drop `balance` × the lesion's size of them
    (keeping at least one), so the total amount of tumour-like signal overlaps between the classes."""
    balance: float = Field(0.8, ge=0)
    """Look-alikes removed per lesion tile in positive cases."""
    signal: float = Field(8.0, gt=0)
    """Amplitude of the tumour signature (lesion tiles draw 0.7–1.0× this)."""
    lookalike_signal: tuple[float, float] = (0.7, 1.0)
    """Range of look-alike amplitudes relative to `signal` (as strong as lesion tiles by default)."""
    noise: float = Field(1.0, ge=0)
    """Standard deviation of the per-tile Gaussian feature noise."""
    sites: int = Field(2, ge=1)
    """Sites, each with its own feature offset (a mild domain shift)."""


@dataclass
class PhantomBag:
    """One generated case: features (N, C), coords (N, 2) level-0 (x, y), grid index (N, 2), truth (N,)."""

    case_id: str
    label: int
    site: str
    features: np.ndarray
    coords: np.ndarray
    grid_index: np.ndarray
    truth: np.ndarray


def _check(cfg: BagPhantomConfig) -> None:
    for name in ("cluster", "lookalikes"):
        lo, hi = getattr(cfg, name)
        if lo < 0 or hi < lo:
            raise ConfigError(f"phantom bags: {name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
    if cfg.cluster[0] < 2:
        raise ConfigError("phantom bags: a lesion needs at least 2 tiles (cluster lo >= 2)")


def _tissue(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random ellipse of tissue on a (side, side) grid, bool."""
    r, c = np.mgrid[:side, :side]
    cy, cx = side / 2 + rng.uniform(-1, 1, 2)
    ay, ax = side / 2 * rng.uniform(0.75, 0.95, 2)
    return ((r - cy) / ay) ** 2 + ((c - cx) / ax) ** 2 <= 1.0


def _grow(rng: np.random.Generator, tissue: np.ndarray, size: int) -> np.ndarray:
    """A connected cluster of `size` tissue cells grown from a random seed cell (4-neighbourhood)."""
    cells = np.argwhere(tissue)
    start = tuple(cells[rng.integers(len(cells))])
    chosen = {start}
    frontier = [start]
    while len(chosen) < size and frontier:
        r, c = frontier[rng.integers(len(frontier))]
        options = [
            (r + dr, c + dc)
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= r + dr < tissue.shape[0] and 0 <= c + dc < tissue.shape[1]
        ]
        options = [p for p in options if tissue[p] and p not in chosen]
        if not options:
            frontier.remove((r, c))
            continue
        p = options[rng.integers(len(options))]
        chosen.add(p)
        frontier.append(p)
    out = np.zeros_like(tissue)
    for p in chosen:
        out[p] = True
    return out


def _isolated(rng: np.random.Generator, free: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` cells of `free`, none 8-adjacent to another chosen cell or to a non-free tumour cell."""
    out = np.zeros_like(free)
    blocked = ~free
    for idx in rng.permutation(np.flatnonzero(free)):
        if out.sum() >= count:
            break
        r, c = divmod(int(idx), free.shape[1])
        window = (slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2))
        if blocked[window].any() or out[window].any():
            continue
        out[r, c] = True
    return out


def _basis(cfg: BagPhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tumour signature (C,), tissue prototypes (3, C) and site offsets (sites, C): fixed per seed."""
    rng = np.random.default_rng([cfg.seed, 7])
    sig = rng.normal(size=cfg.dim)
    sig /= np.linalg.norm(sig)
    protos = rng.normal(size=(3, cfg.dim))
    protos -= np.outer(protos @ sig, sig)  # tissue types carry none of the signature
    sites = 0.5 * rng.normal(size=(cfg.sites, cfg.dim))
    sites -= np.outer(sites @ sig, sig)
    return sig, protos, sites


def make_bag(i: int, cfg: BagPhantomConfig, label: int, site: int = 0) -> PhantomBag:
    """Case `i` (seeded by ``cfg.seed`` and `i` only) with the given label and site."""
    _check(cfg)
    sig, protos, offsets = _basis(cfg)
    rng = np.random.default_rng([cfg.seed, i])
    tissue = _tissue(rng, cfg.grid)
    lesion = (
        _grow(rng, tissue, int(rng.integers(cfg.cluster[0], cfg.cluster[1] + 1))) if label else np.zeros_like(tissue)
    )
    n_looks = int(rng.integers(cfg.lookalikes[0], cfg.lookalikes[1] + 1))
    if label:
        n_looks = max(min(n_looks, 1), n_looks - round(cfg.balance * int(lesion.sum())))
    looks = _isolated(rng, tissue & ~lesion, n_looks)
    cells = np.argwhere(tissue)  # (N, 2) row, col
    n = len(cells)
    # tissue: a smooth mixture of prototypes across the grid (neighbouring tiles look alike)
    centres = rng.uniform(0, cfg.grid, size=(3, 2))
    dist = np.linalg.norm(cells[:, None, :] - centres[None], axis=2)  # (N, 3)
    weights = np.exp(-dist / (cfg.grid / 3))
    weights /= weights.sum(1, keepdims=True)
    feats = weights @ protos + offsets[site] + cfg.noise * rng.normal(size=(n, cfg.dim))
    amp = np.zeros(n)
    on_lesion = lesion[cells[:, 0], cells[:, 1]]
    on_look = looks[cells[:, 0], cells[:, 1]]
    amp[on_lesion] = cfg.signal * rng.uniform(0.7, 1.0, int(on_lesion.sum()))
    amp[on_look] = cfg.signal * rng.uniform(*cfg.lookalike_signal, int(on_look.sum()))
    feats += amp[:, None] * sig[None]
    coords = np.stack([cells[:, 1], cells[:, 0]], 1) * PATCH_SIZE  # (x, y) level-0 pixels
    return PhantomBag(
        f"bag{i:04d}", int(label), f"site{site}", feats.astype(np.float32), coords.astype(np.int64),
        cells.astype(np.int64), on_lesion.astype(np.uint8),
    )  # fmt: skip


def save_clam_bag(case: PhantomBag, path: Path) -> Path:
    """Write `case` as a CLAM-style h5 (``features``, ``coords`` with ``patch_size``, plus ``truth``), atomically."""
    import h5py

    from medwss.io.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=case.features)
        coords = f.create_dataset("coords", data=case.coords)
        coords.attrs["patch_size"] = PATCH_SIZE
        coords.attrs["patch_level"] = 0
        f.create_dataset("truth", data=case.truth)
    return path


def load_truth(path: str | Path) -> np.ndarray:
    """The per-tile lesion truth (N,) of a phantom bag file."""
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["truth"][()]).astype(np.uint8)


def generate_bags(out: str | Path, cfg: BagPhantomConfig | None = None, progress: bool = True) -> Path:
    """Write ``cfg.n`` context phantom bags and ``out/manifest.csv`` (no image column); returns the manifest.

    Labels alternate (half positive), sites cycle, and patients are split 60/20/20 into
    train/val/test, stratified by label (`medwss.data.splits.split_cases`).
    """
    from medwss.data.manifest import Case, write_manifest
    from medwss.data.splits import split_cases

    cfg = cfg or BagPhantomConfig()
    _check(cfg)
    out = Path(out)
    (out / "bags").mkdir(parents=True, exist_ok=True)
    plan = [(i, i % 2, (i // 2) % cfg.sites) for i in range(cfg.n)]
    stubs = [Case(f"bag{i:04d}", f"bag{i:04d}", f"site{s}", "WSI", {}, label=y) for i, y, s in plan]
    split_of = split_cases(stubs, (0.6, 0.2, 0.2), cfg.seed, stratify=("label",))
    rows: list[dict[str, object]] = []
    for i, y, s in tqdm(plan, desc="phantom bags", disable=not progress):
        case = make_bag(i, cfg, y, s)
        path = save_clam_bag(case, out / "bags" / f"{case.case_id}.h5")
        rows.append({"case_id": case.case_id, "patient_id": case.case_id, "site": case.site, "modality": "WSI",
                     "label": y, "features": path, "split": split_of[case.case_id],
                     "meta_lesion_tiles": int(case.truth.sum())})  # fmt: skip
    return write_manifest(rows, out / "manifest.csv")
