"""A tiny multi-site bi-parametric MRI phantom manifest shared by the scribble tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mri_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six cases (two per site, one with a lesion each) at scale 0.5."""
    from medwss.data.phantoms import generate

    return generate("mri", tmp_path_factory.mktemp("mri"), n=6, seed=0, scale=0.5, progress=False)
