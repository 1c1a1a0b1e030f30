"""Shared fixtures: the real third-party files in ../shared/data/real/ and tiny seeded synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

# One compute thread per process: the suite runs on two xdist workers over two cores, and torch's
# default (a thread per core in every worker, notebook kernel and CLI subprocess) oversubscribes
# them; small tensor ops then spin (a Sinkhorn solve measured 30x slower with 2 threads than 1 on
# the loaded 2-core machine). Subprocesses and notebook kernels inherit these variables.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


def pytest_configure(config: pytest.Config) -> None:
    """Torch imported before this file (by a plugin) keeps its thread count: set it here too."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


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
