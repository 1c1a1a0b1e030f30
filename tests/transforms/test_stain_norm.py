"""Stain normalisation (Macenko) on a synthetic H&E-like tile."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import InvalidDataError
from medwss.transforms.stain_norm import (
    REFERENCE,
    MacenkoNormalizer,
    macenko_stains,
    normalize_stain,
)


def he_tile(seed: int = 0, size: int = 64, stains: np.ndarray | None = None) -> np.ndarray:
    """Beer-Lambert mix of two stains (haematoxylin, eosin) with glass along the top rows."""
    rng = np.random.default_rng(seed)
    h = np.clip(rng.gamma(2.0, 0.4, (size, size)), 0, 3)
    e = np.clip(rng.gamma(2.0, 0.25, (size, size)), 0, 2)
    h[: size // 4], e[: size // 4] = 0.0, 0.02
    m = REFERENCE.matrix if stains is None else stains
    od = np.einsum("cs,hws->hwc", m, np.stack([h, e], -1))
    return np.clip(np.round(240 * np.exp(-od) - 1), 0, 255).astype(np.uint8)


def test_stain_vectors_are_unit_and_found() -> None:
    stains = macenko_stains(he_tile())
    np.testing.assert_allclose(np.linalg.norm(stains.matrix, axis=0), 1.0, atol=1e-9)
    assert stains.matrix.shape == (3, 2) and (stains.max_conc > 0).all()
    # haematoxylin first, and both close to the stains the tile was made of
    cos = np.sum(stains.matrix * REFERENCE.matrix, axis=0)
    assert (cos > 0.98).all()


def test_normalising_to_its_own_stains_is_near_identity() -> None:
    tile = he_tile()
    out = MacenkoNormalizer().fit(tile)(tile)
    assert out.dtype == np.uint8 and out.shape == tile.shape
    assert np.abs(out.astype(int) - tile).mean() < 0.5


def test_normalising_moves_another_stain_towards_the_target() -> None:
    other = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    other /= np.linalg.norm(other, axis=0)
    tile, target = he_tile(1, stains=other), he_tile(2)
    out = MacenkoNormalizer().fit(target)(tile)
    before = np.abs(tile.reshape(-1, 3).mean(0) - target.reshape(-1, 3).mean(0)).mean()
    after = np.abs(out.reshape(-1, 3).mean(0) - target.reshape(-1, 3).mean(0)).mean()
    assert after < before / 2


def test_blank_tile_is_left_alone() -> None:
    blank = np.full((32, 32, 3), 245, np.uint8)
    with pytest.raises(InvalidDataError, match="stained pixels"):
        macenko_stains(blank)
    np.testing.assert_array_equal(normalize_stain(blank, "macenko"), blank)
    np.testing.assert_array_equal(normalize_stain(he_tile(), "none"), he_tile())
