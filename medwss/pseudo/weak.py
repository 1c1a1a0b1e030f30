"""Sparse labels derived from a full label map: points, scribbles, blocks, boxes, tags (for benchmarks and demos).

Each returns a map with `IGNORE` where nothing is labelled (tags return a vector). Background is
labelled like any class (annotators mark some background too), except in `box_labels`, where
everything outside the boxes is background and the inside of each box is left unlabelled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medwss.pseudo.boxes import boxes_from_labels
from medwss.pseudo.protocol import IGNORE


def _interior(mask: np.ndarray, depth: int) -> np.ndarray:
    inner = ndimage.binary_erosion(mask, iterations=depth) if depth > 0 else mask
    return inner if inner.any() else mask


def point_labels(labels: np.ndarray, n_classes: int, per_class: int = 1, seed: int = 0, depth: int = 2) -> np.ndarray:
    """`per_class` random pixels away from the boundary of every class present."""
    rng = np.random.default_rng(seed)
    out = np.full(labels.shape, IGNORE, dtype=np.int64)
    for c in range(n_classes):
        idx = np.flatnonzero(_interior(labels == c, depth))
        if idx.size:
            out.flat[rng.choice(idx, size=min(per_class, idx.size), replace=False)] = c
    return out


def scribble_labels(labels: np.ndarray, n_classes: int, depth: int = 2) -> np.ndarray:
    """The skeleton of each class's eroded region (a scribble along its middle), background included."""
    from skimage.morphology import skeletonize

    out = np.full(labels.shape, IGNORE, dtype=np.int64)
    for c in range(n_classes):
        inner = _interior(labels == c, depth + (3 if c == 0 else 0))
        if inner.any():
            out[skeletonize(inner)] = c
    return out


def block_labels(labels: np.ndarray, n_classes: int, size: int = 3, depth: int = 1) -> np.ndarray:
    """A `size`-wide block at the most interior pixel of each connected component of every class."""
    out = np.full(labels.shape, IGNORE, dtype=np.int64)
    half = size // 2
    for c in range(n_classes):
        comp, n = ndimage.label(labels == c)
        for i in range(1, n + 1):
            m = comp == i
            dist = ndimage.distance_transform_edt(m)
            centre = np.unravel_index(int(np.argmax(dist)), m.shape)
            sl = tuple(slice(max(0, p - half), p + half + 1) for p in centre)
            out[sl] = np.where(_interior(m, depth)[sl], c, out[sl])
    return out


def box_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Outside every class's boxes: background; inside: unlabelled (`IGNORE`)."""
    out = np.zeros(labels.shape, dtype=np.int64)
    for b in boxes_from_labels(labels, range(1, n_classes)):
        out[b.slices] = IGNORE
    return out


def tag_vector(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) bool: which classes (background included) occur."""
    return np.array([(labels == c).any() for c in range(n_classes)])


WEAK_KINDS = ("points", "scribbles", "blocks", "boxes")


def weak_labels(kind: str, labels: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    """Dispatch: ``points``, ``scribbles``, ``blocks`` or ``boxes``."""
    if kind == "points":
        return point_labels(labels, n_classes, per_class=3, seed=seed)
    if kind == "scribbles":
        return scribble_labels(labels, n_classes)
    if kind == "blocks":
        return block_labels(labels, n_classes)
    if kind == "boxes":
        return box_labels(labels, n_classes)
    raise ValueError(f"unknown weak label kind '{kind}': choose one of {', '.join(WEAK_KINDS)}")
