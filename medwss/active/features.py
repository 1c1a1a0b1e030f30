"""Slice embeddings for selection, by name, computed once and cached on disk.

``contrastive``: the encoder trained by `medwss.active.metric.train_metric` on the pool.
``untrained``: the same architecture with its random initialisation (the plain Coreset baseline).
``pixels``: the thumbnails themselves, flattened (for fusion).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from medwss.active.metric import MetricConfig, make_encoder, slice_features, train_metric
from medwss.active.pool import SlicePool
from medwss.io.atomic import atomic_path
from medwss.registry import Registry


class FeatureFn(Protocol):
    """A feature provider: ``fn(pool, cfg, folder, progress) -> (N, D)`` features of the pool's slices.

    Contract: one float row per slice of `pool`, in its order, the same rows for the same ``cfg.seed``;
    `folder` (None: nothing cached) is where it may keep what it trained. `tests/test_contracts.py`
    checks every registered provider takes these four positional arguments.
    """

    def __call__(self, pool: SlicePool, cfg: MetricConfig, folder: Path | None, progress: bool, /) -> np.ndarray: ...


FEATURES: Registry[FeatureFn] = Registry(
    "features", package="medwss.active", marker="register_features", plural="features"
)
"""Every feature provider; a module of `medwss.active` that calls `register_features` is found on first lookup."""


def register_features(name: str) -> Callable[[FeatureFn], FeatureFn]:
    """Register a feature function ``fn(pool, cfg, folder, progress) -> (N, D)`` under `name` (a decorator)."""
    return FEATURES.register(name)


@register_features("contrastive")
def _contrastive(pool: SlicePool, cfg: MetricConfig, folder: Path | None, progress: bool) -> np.ndarray:
    weights = None if folder is None else folder / "metric_encoder.pt"
    encoder, _ = train_metric(
        pool.thumbs, pool.groups("volume"), pool.groups("patient"), pool.slice_index(), cfg, weights, progress
    )
    return slice_features(encoder, pool.thumbs, cfg.device)


@register_features("untrained")
def _untrained(pool: SlicePool, cfg: MetricConfig, folder: Path | None, progress: bool) -> np.ndarray:
    torch.manual_seed(cfg.seed)
    return slice_features(make_encoder(cfg), pool.thumbs, cfg.device)


@register_features("pixels")
def _pixels(pool: SlicePool, cfg: MetricConfig, folder: Path | None, progress: bool) -> np.ndarray:
    return pool.thumbs.reshape(len(pool), -1).astype(np.float32)


def compute_features(name: str, pool: SlicePool, cfg: MetricConfig, folder: Path | None, progress: bool) -> np.ndarray:
    """``(N, D)`` features of the pool's slices (training the metric first for ``contrastive``).

    Raises:
        UnknownNameError: (a `ConfigError`) `name` is not in `FEATURES`.
    """
    return FEATURES.get(name)(pool, cfg, folder, progress)


def feature_provider(
    pool: SlicePool, cfg: MetricConfig, folder: str | Path | None = None, progress: bool = True
) -> Callable[[str], np.ndarray]:
    """A function name → features that computes each set once, cached in memory and (with `folder`) on disk."""
    memo: dict[str, np.ndarray] = {}
    root = None if folder is None else Path(folder)

    def get(name: str) -> np.ndarray:
        if name in memo:
            return memo[name]
        path = None if root is None else root / f"{name}.npy"
        if path is not None and path.exists():
            feats = np.load(path)
            if len(feats) == len(pool):
                memo[name] = feats
                return feats
        feats = compute_features(name, pool, cfg, root, progress)
        if path is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats)
        memo[name] = feats
        return feats

    return get
