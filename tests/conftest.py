"""Shared fixtures: the real third-party files in ../shared/data/real/ and tiny seeded synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real() -> Path:
    """The folder of real test files; tests using it skip (with the reason) when it is absent."""
    if not REAL.is_dir():
        pytest.skip(f"real test data folder not found: {REAL}")
    return REAL


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def package_data(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package (pydicom, nibabel)."""
    import importlib

    mod = importlib.import_module(package)
    path = Path(mod.__file__).parent.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not shipped by the installed {package}")
    return path
